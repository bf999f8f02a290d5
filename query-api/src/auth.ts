import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import {
  ApiError,
  PM_ERR_AUTH_UNAVAILABLE,
  PM_ERR_FORBIDDEN,
  PM_ERR_RATE_LIMITED,
  PM_ERR_UNAUTHENTICATED,
} from './errors.ts';
import {
  KubeUnavailableError,
  type AccessAttributes,
  type Caller,
  type KubeReviews,
} from './kube-reviews.ts';
import type { NamespaceScope } from './search-query.ts';
import type { LoginLimiter } from './login-limiter.ts';
import type { Telemetry } from './telemetry.ts';
import { TtlCache } from './ttl-cache.ts';

// Who is calling (TokenReview) and what they may do (SubjectAccessReview on podmortem.io
// coredumps, per namespace), each answer kept for a short time. A token is only ever held as
// its sha256 in memory, and never logged.

const bearerRe = /^Bearer ([A-Za-z0-9._~+/=-]{1,8192})$/;

export interface AccessParams {
  reviews: KubeReviews;
  telemetry: Telemetry;
  logger: Logger;
  ttlMs: number;
  namespaceTtlMs: number;
  /** The namespaces present in the crash index (cached here). */
  indexNamespaces: () => Promise<string[]>;
  /** The TokenReviews each client address may cause. */
  logins: LoginLimiter;
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

// The client is told which review failed, never why: the reason names the Kubernetes API's
// address. It goes to the log instead (no token is in it: the reviews carry tokens in bodies).
function unavailable(err: unknown, logger: Logger): never {
  if (err instanceof KubeUnavailableError) {
    logger.warn({ err }, 'the Kubernetes API did not answer a review');
    throw PM_ERR_AUTH_UNAVAILABLE(err.review);
  }
  throw err;
}

export class Access {
  private readonly params: AccessParams;
  private readonly tokens: TtlCache<Caller | undefined>;
  private readonly decisions: TtlCache<boolean>;
  private readonly namespaces: TtlCache<string[]>;

  constructor(params: AccessParams) {
    this.params = params;
    this.tokens = new TtlCache({ ttlMs: params.ttlMs });
    this.decisions = new TtlCache({ ttlMs: params.ttlMs, maxEntries: 50_000 });
    this.namespaces = new TtlCache({ ttlMs: params.namespaceTtlMs, maxEntries: 1 });
  }

  /**
   * The caller of a request from its Authorization header; 401 when absent or not valid, 429 when
   * `address` has caused all the TokenReviews it may in this window.
   */
  async authenticate(authorization: string | undefined, address: string): Promise<Caller> {
    const { telemetry } = this.params;
    if (authorization === undefined || authorization === '') {
      telemetry.authentications.inc({ result: 'missing' });
      throw PM_ERR_UNAUTHENTICATED('headers/authorization: a bearer token is required');
    }
    const token = bearerRe.exec(authorization)?.[1];
    if (token === undefined) {
      telemetry.authentications.inc({ result: 'rejected' });
      throw PM_ERR_UNAUTHENTICATED('headers/authorization must be "Bearer <token>"');
    }
    let caller: Caller | undefined;
    try {
      caller = await this.tokens.get(tokenHash(token), () => this.reviewToken(token, address));
    } catch (err) {
      if (err instanceof ApiError) throw err;
      telemetry.authentications.inc({ result: 'unavailable' });
      this.params.telemetry.backendErrors.inc({ backend: 'kubernetes' });
      unavailable(err, this.params.logger);
    }
    if (caller === undefined) {
      telemetry.authentications.inc({ result: 'rejected' });
      throw PM_ERR_UNAUTHENTICATED('the bearer token is not valid');
    }
    telemetry.authentications.inc({ result: 'authenticated' });
    return caller;
  }

  /** One TokenReview, if the address may still cause one (a refusal is no answer: not cached). */
  private async reviewToken(token: string, address: string): Promise<Caller | undefined> {
    const { logins, reviews, telemetry } = this.params;
    const waitMs = logins.reserve(address);
    if (waitMs > 0) {
      telemetry.authentications.inc({ result: 'limited' });
      const seconds = Math.ceil(waitMs / 1000);
      throw PM_ERR_RATE_LIMITED(seconds, 'too many failed authentications from this address');
    }
    try {
      const caller = await reviews.reviewToken(token);
      if (caller === undefined) logins.failed(address);
      return caller;
    } finally {
      logins.release(address);
    }
  }

  async can(caller: Caller, attrs: AccessAttributes): Promise<boolean> {
    const key = JSON.stringify([
      caller.username,
      caller.uid ?? '',
      [...caller.groups].sort(),
      attrs.verb,
      attrs.namespace,
      attrs.subresource ?? '',
    ]);
    try {
      return await this.decisions.get(key, async () => {
        const allowed = await this.params.reviews.reviewAccess(caller, attrs);
        this.params.telemetry.accessReviews.inc({ verb: attrs.verb, allowed: String(allowed) });
        return allowed;
      });
    } catch (err) {
      this.params.telemetry.backendErrors.inc({ backend: 'kubernetes' });
      return unavailable(err, this.params.logger);
    }
  }

  /**
   * Whether the caller may read a crash of `namespace` (undefined: a host process, outside any
   * pod, which only cluster-wide rights cover).
   */
  async mayRead(caller: Caller, namespace: string | undefined, subresource?: 'dump'): Promise<boolean> {
    return this.can(caller, { verb: 'get', namespace: namespace ?? '', subresource });
  }

  /** Whether the caller may delete the dumps of `namespace`'s crashes (`delete` on coredumps/dump). */
  async mayDeleteDump(caller: Caller, namespace: string | undefined): Promise<boolean> {
    return this.can(caller, { verb: 'delete', namespace: namespace ?? '', subresource: 'dump' });
  }

  /**
   * The namespaces a search may cover. With `namespace` given, that one (403 when not allowed);
   * otherwise every namespace when the caller may list cluster-wide, else the namespaces of the
   * index the caller may list (403 when none).
   */
  async listScope(caller: Caller, namespace?: string): Promise<NamespaceScope> {
    if (namespace !== undefined) {
      if (await this.can(caller, { verb: 'list', namespace })) return { all: false, namespaces: [namespace] };
      throw PM_ERR_FORBIDDEN(
        `${caller.username} may not list coredumps.podmortem.io in namespace ${namespace}`,
      );
    }
    if (await this.can(caller, { verb: 'list', namespace: '' })) return { all: true };
    const present = await this.namespaces.get('all', () => this.params.indexNamespaces());
    const allowed: string[] = [];
    // A few reviews at a time: a cluster may have many namespaces.
    for (let i = 0; i < present.length; i += 16) {
      const batch = present.slice(i, i + 16);
      const answers = await Promise.all(batch.map((ns) => this.can(caller, { verb: 'list', namespace: ns })));
      batch.forEach((ns, j) => {
        if (answers[j] === true) allowed.push(ns);
      });
    }
    if (allowed.length === 0)
      throw PM_ERR_FORBIDDEN(
        `${caller.username} may not list coredumps.podmortem.io in any namespace that has crashes ` +
          '(querystring/namespace names one to search)',
      );
    return { all: false, namespaces: allowed };
  }
}

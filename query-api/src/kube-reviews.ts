import {
  ApiException,
  AuthenticationV1Api,
  AuthorizationV1Api,
  Observable,
  type KubeConfig,
  type ObservableMiddleware,
  type V1SubjectAccessReview,
} from '@kubernetes/client-node';
import { PodmortemError, messageOf, registryOptions, retry, retryPolicy } from '@podmortem/contract/runtime';
import { API_ERRORS } from './errors.ts';

// The two Kubernetes reviews the query API relies on: TokenReview (who is calling) and
// SubjectAccessReview (may they do this in that namespace), through @kubernetes/client-node.

export const RBAC_GROUP = 'podmortem.io';
export const RBAC_RESOURCE = 'coredumps';

export interface Caller {
  username: string;
  uid?: string | undefined;
  groups: string[];
  extra?: Record<string, string[]> | undefined;
}

export interface AccessAttributes {
  verb: 'list' | 'get' | 'delete';
  /** '' asks for cluster-wide rights. */
  namespace: string;
  subresource?: 'dump' | undefined;
}

export interface KubeReviews {
  /** The caller behind a bearer token, or undefined when the token is not valid. */
  reviewToken(token: string): Promise<Caller | undefined>;
  reviewAccess(caller: Caller, attrs: AccessAttributes): Promise<boolean>;
}

export class KubeUnavailableError extends PodmortemError {
  /** The review that failed (TokenReview, SubjectAccessReview): all a client may be told. */
  readonly review: string;

  constructor(review: string, cause: unknown) {
    const code = 'PM_ERR_KUBE_UNAVAILABLE';
    super(code, `${review}: ${messageOf(cause)}`, registryOptions(API_ERRORS[code], cause));
    this.name = 'KubeUnavailableError';
    this.review = review;
  }
}

function timedOut(err: unknown): boolean {
  return err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
}

// Server errors and network failures may pass; a 4xx (our own credentials refused) will not, and
// neither will a review that timed out: a stalled API would only hold the caller that much longer.
function passing(err: unknown): boolean {
  if (err instanceof ApiException) return (err as ApiException<unknown>).code >= 500;
  return !timedOut(err);
}

/** Request options that abort a review not answered within `timeoutMs`, its body included. */
function deadline(timeoutMs: number): {
  middleware: ObservableMiddleware[];
  middlewareMergeStrategy: 'append';
} {
  // The client's object-parameter calls take the observable form of a middleware.
  const timer: ObservableMiddleware = {
    pre: (context) => {
      context.setSignal(AbortSignal.timeout(timeoutMs));
      return new Observable(Promise.resolve(context));
    },
    post: (context) => new Observable(Promise.resolve(context)),
  };
  return { middleware: [timer], middlewareMergeStrategy: 'append' };
}

export interface KubeReviewsOptions {
  /** How long one TokenReview or SubjectAccessReview may take before the caller gets a 503. */
  timeoutMs: number;
}

export function createKubeReviews(kc: KubeConfig, options: KubeReviewsOptions): KubeReviews {
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const authz = kc.makeApiClient(AuthorizationV1Api);
  // A review holds up a request: a short burst, then the caller gets a 503.
  const policy = retryPolicy({ retries: 2, initialMs: 50, maxMs: 500, retriable: passing });
  const requestOptions = deadline(options.timeoutMs);
  const call = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await retry(what, fn, policy);
    } catch (err) {
      throw new KubeUnavailableError(what, err);
    }
  };
  return {
    async reviewToken(token) {
      const review = await call('TokenReview', () =>
        authn.createTokenReview(
          { body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } } },
          requestOptions,
        ),
      );
      const status = review.status;
      if (status?.authenticated !== true || !status.user?.username) return undefined;
      return {
        username: status.user.username,
        uid: status.user.uid,
        groups: status.user.groups ?? [],
        extra: status.user.extra,
      };
    },
    async reviewAccess(caller, attrs) {
      const body: V1SubjectAccessReview = {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: caller.username,
          uid: caller.uid,
          groups: caller.groups,
          extra: caller.extra,
          resourceAttributes: {
            group: RBAC_GROUP,
            resource: RBAC_RESOURCE,
            verb: attrs.verb,
            namespace: attrs.namespace,
            ...(attrs.subresource ? { subresource: attrs.subresource } : {}),
          },
        },
      };
      const review = await call('SubjectAccessReview', () =>
        authz.createSubjectAccessReview({ body }, requestOptions),
      );
      return review.status?.allowed === true && review.status.denied !== true;
    },
  };
}

import type { Static } from '@sinclair/typebox';
import type { ContextResponse, SearchResponse } from '../schemas.ts';

// The API's answers as the CLI reads them, derived from the route schemas so the two cannot drift
// apart; imported for their types only, so the CLI loads nothing of the server.

export type SearchPage = Static<typeof SearchResponse>;
export type CrashContext = Static<typeof ContextResponse>;

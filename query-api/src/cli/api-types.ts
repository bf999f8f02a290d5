import type { Static } from '@sinclair/typebox';
import type { DumpDeletionResponse } from '../crash-delete.ts';
import type { ReanalysisResponse } from '../crash-reanalysis.ts';
import type { GroupResponse, GroupsResponse } from '../groups.ts';
import type { ContextResponse, SearchResponse } from '../schemas.ts';

// The API's answers as the CLI reads them, derived from the route schemas so the two cannot drift
// apart; imported for their types only, so the CLI loads nothing of the server.

export type SearchPage = Static<typeof SearchResponse>;
export type CrashContext = Static<typeof ContextResponse>;
export type GroupsPage = Static<typeof GroupsResponse>;
export type GroupPage = Static<typeof GroupResponse>;
export type Reanalysis = Static<typeof ReanalysisResponse>;
export type DumpDeletion = Static<typeof DumpDeletionResponse>;

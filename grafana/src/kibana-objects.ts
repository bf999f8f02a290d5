import { CRASH_ALIAS } from '@podmortem/contract';
import { TIME_FIELD } from './datasources.ts';
import { generatedNote } from './generated-note.ts';

// Kibana saved objects for the crash index, in the Saved Objects import format (one JSON object a
// line): a data view over the monthly indices and a few saved searches in Discover. The searches
// are Lucene (not KQL), the query language Elasticsearch itself runs, so the tests run them too.
// A data view has no free-text attribute Kibana accepts, so the generated note is in each search's
// description, and a search opens the file.

export const DATA_VIEW_ID = 'podmortem-crashes';
const INDEX_REF = 'kibanaSavedObjectMeta.searchSourceJSON.index';

export interface DataViewObject {
  id: string;
  type: 'index-pattern';
  coreMigrationVersion: '8.8.0';
  typeMigrationVersion: '8.0.0';
  managed: false;
  attributes: {
    title: string;
    name: string;
    timeFieldName: string;
    allowNoIndex: boolean;
    fields: string;
    fieldAttrs: string;
    fieldFormatMap: string;
    runtimeFieldMap: string;
    sourceFilters: string;
  };
  references: [];
}

/** What a saved search's searchSourceJSON holds (Kibana keeps it as a string). */
export interface SearchSource {
  query: { query: string; language: 'lucene' };
  filter: [];
  indexRefName: typeof INDEX_REF;
}

export interface SavedSearchObject {
  id: string;
  type: 'search';
  coreMigrationVersion: '8.8.0';
  typeMigrationVersion: '8.0.0';
  managed: false;
  attributes: {
    title: string;
    description: string;
    columns: string[];
    sort: [string, 'asc' | 'desc'][];
    grid: Record<string, never>;
    hideChart: boolean;
    isTextBasedQuery: false;
    timeRestore: false;
    kibanaSavedObjectMeta: { searchSourceJSON: string };
  };
  references: [{ id: string; name: typeof INDEX_REF; type: 'index-pattern' }];
}

export type KibanaObject = DataViewObject | SavedSearchObject;

const columns = [
  'kubernetes.namespace',
  'kubernetes.pod.name',
  'kubernetes.container.name',
  'process.executable',
  'signal.name',
  'dump.status',
  'crash.id',
];

function savedSearch(
  id: string,
  title: string,
  about: string,
  query: string,
  extra: string[] = [],
): SavedSearchObject {
  const source: SearchSource = { query: { query, language: 'lucene' }, filter: [], indexRefName: INDEX_REF };
  return {
    id,
    type: 'search',
    coreMigrationVersion: '8.8.0',
    typeMigrationVersion: '8.0.0',
    managed: false,
    attributes: {
      title,
      description: `${about} ${generatedNote('kibana-objects.ts')}`,
      columns: [...columns, ...extra],
      sort: [[TIME_FIELD, 'desc']],
      grid: {},
      hideChart: false,
      isTextBasedQuery: false,
      timeRestore: false,
      kibanaSavedObjectMeta: { searchSourceJSON: JSON.stringify(source) },
    },
    references: [{ id: DATA_VIEW_ID, name: INDEX_REF, type: 'index-pattern' }],
  };
}

export function kibanaObjects(): KibanaObject[] {
  const dataView: DataViewObject = {
    id: DATA_VIEW_ID,
    type: 'index-pattern',
    coreMigrationVersion: '8.8.0',
    typeMigrationVersion: '8.0.0',
    managed: false,
    attributes: {
      title: `${CRASH_ALIAS}*`,
      name: 'podmortem crashes',
      timeFieldName: TIME_FIELD,
      allowNoIndex: true,
      fields: '[]',
      fieldAttrs: '{}',
      fieldFormatMap: '{}',
      runtimeFieldMap: '{}',
      sourceFilters: '[]',
    },
    references: [],
  };
  return [
    savedSearch(
      'podmortem-dumps-not-kept',
      'podmortem: crashes with the dump truncated or skipped',
      'Crashes whose core was cut at the size limit or not kept (rate limit, namespace quota, free space).',
      'dump.status:(truncated OR skipped)',
      ['dump.reason', 'dump.size_bytes', 'dump.limit_bytes'],
    ),
    savedSearch(
      'podmortem-sigsegv',
      'podmortem: SIGSEGV crashes',
      'Segmentation faults, with the faulting address and the stack signature where analysed.',
      'signal.name:SIGSEGV',
      ['fault.address', 'analysis.signature'],
    ),
    savedSearch(
      'podmortem-by-signature',
      'podmortem: analysed crashes by stack signature',
      'Every crash with a stack signature, the signature and title first: filter on one analysis.signature value to see every crash of that bug (the query API groups them at /v1/groups).',
      '_exists_:analysis.signature',
      ['analysis.signature', 'analysis.title', 'analysis.status'],
    ),
    savedSearch(
      'podmortem-host-crashes',
      'podmortem: crashes outside pods',
      'Crashes of host processes, outside any Kubernetes pod.',
      'NOT _exists_:kubernetes.namespace',
      ['collector.node', 'process.name'],
    ),
    dataView,
  ];
}

import { TIME_FIELD } from './datasources.ts';
import type { DataLink, EsTarget, FieldConfig, GridPos, Panel, Target } from './dashboard-json.ts';

// Panel builders and the grid they are laid out on (24 columns, left to right, then down).
// Panel ids follow the order panels are added, so they stay stable for alert rules linking them.

type PanelBody = Omit<Panel, 'id' | 'gridPos'>;

const GRID_WIDTH = 24;

export class PanelGrid {
  readonly panels: Panel[] = [];
  private x = 0;
  private y = 0;
  private lineHeight = 0;

  /** A row header across the whole width. */
  row(title: string): void {
    this.newLine();
    this.panels.push({
      id: this.panels.length + 1,
      type: 'row',
      title,
      gridPos: { h: 1, w: GRID_WIDTH, x: 0, y: this.y },
      collapsed: false,
      panels: [],
    });
    this.y += 1;
  }

  add(body: PanelBody, w: number, h: number): Panel {
    if (this.x + w > GRID_WIDTH) this.newLine();
    const gridPos: GridPos = { h, w, x: this.x, y: this.y };
    this.x += w;
    this.lineHeight = Math.max(this.lineHeight, h);
    const panel: Panel = { id: this.panels.length + 1, ...body, gridPos };
    this.panels.push(panel);
    return panel;
  }

  private newLine(): void {
    this.y += this.lineHeight;
    this.x = 0;
    this.lineHeight = 0;
  }
}

/** What every panel starts with: its type and title, a description if any, its queries and their datasource. */
function panelHead(
  type: Panel['type'],
  title: string,
  targets: Target[],
  description?: string,
): Pick<Panel, 'type' | 'title' | 'description' | 'datasource' | 'targets'> {
  const first = targets[0];
  return {
    type,
    title,
    ...(description ? { description } : {}),
    ...(first ? { datasource: first.datasource } : {}),
    targets,
  };
}

const legend = { displayMode: 'list', placement: 'bottom', showLegend: true };

export function timeseries(
  title: string,
  targets: Target[],
  params: { unit?: string; description?: string; bars?: boolean; stacked?: boolean; min?: number } = {},
): PanelBody {
  return {
    ...panelHead('timeseries', title, targets, params.description),
    fieldConfig: {
      defaults: {
        ...(params.unit ? { unit: params.unit } : {}),
        ...(params.min !== undefined ? { min: params.min } : {}),
        custom: {
          drawStyle: params.bars ? 'bars' : 'line',
          fillOpacity: params.bars ? 80 : 10,
          lineWidth: 1,
          showPoints: 'never',
          spanNulls: false,
          stacking: { mode: params.stacked ? 'normal' : 'none', group: 'A' },
        },
      },
      overrides: [],
    },
    options: { legend, tooltip: { mode: 'multi', sort: 'desc' } },
  };
}

/** One bar per row of a terms query (reduceOptions.values: every row, not one reduced value). */
export function barGauge(title: string, target: EsTarget, description: string): PanelBody {
  return {
    ...panelHead('bargauge', title, [target], description),
    fieldConfig: { defaults: { unit: 'short', decimals: 0, min: 0 }, overrides: [] },
    options: {
      reduceOptions: { values: true, calcs: ['lastNotNull'], fields: '' },
      orientation: 'horizontal',
      displayMode: 'basic',
      showUnfilled: true,
      valueMode: 'color',
      namePlacement: 'left',
      minVizWidth: 0,
      minVizHeight: 16,
    },
  };
}

export function stat(
  title: string,
  targets: Target[],
  params: { unit?: string; description?: string; redFrom?: number; calc?: 'lastNotNull' | 'sum' },
): PanelBody {
  const steps: { color: string; value: number | null }[] = [{ color: 'green', value: null }];
  if (params.redFrom !== undefined) steps.push({ color: 'red', value: params.redFrom });
  return {
    ...panelHead('stat', title, targets, params.description),
    fieldConfig: {
      defaults: {
        unit: params.unit ?? 'short',
        color: { mode: 'thresholds' },
        thresholds: { mode: 'absolute', steps },
      },
      overrides: [],
    },
    options: {
      reduceOptions: { values: false, calcs: [params.calc ?? 'lastNotNull'], fields: '' },
      colorMode: 'value',
      graphMode: 'area',
      textMode: 'auto',
      justifyMode: 'auto',
      orientation: 'auto',
    },
  };
}

export interface Column {
  /** The document field (raw data frames name fields by their dotted path). */
  field: string;
  title: string;
  links?: DataLink[];
}

/** Crash documents as a table, newest first: the time, then the chosen fields under their titles. */
export function documentTable(title: string, target: EsTarget, chosen: Column[]): PanelBody {
  const columns: Column[] = [{ field: TIME_FIELD, title: 'Time' }, ...chosen];
  const overrides: FieldConfig['overrides'] = columns
    .filter((c) => c.links)
    .map((c) => ({
      matcher: { id: 'byName', options: c.title },
      properties: [{ id: 'links', value: c.links }],
    }));
  return {
    ...panelHead('table', title, [target]),
    fieldConfig: { defaults: {}, overrides },
    options: { showHeader: true, cellHeight: 'sm', sortBy: [{ displayName: 'Time', desc: true }] },
    transformations: [
      { id: 'filterFieldsByName', options: { include: { names: columns.map((c) => c.field) } } },
      {
        id: 'organize',
        options: {
          excludeByName: {},
          indexByName: Object.fromEntries(columns.map((c, i) => [c.field, i])),
          renameByName: Object.fromEntries(columns.map((c) => [c.field, c.title])),
        },
      },
    ],
  };
}

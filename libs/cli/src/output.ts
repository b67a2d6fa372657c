/** How results are printed: human tables (default), JSON for scripts, or CSV. */
export type Format = 'table' | 'json' | 'csv';

export interface Out {
  format: Format;
  write(text: string): void;
  error(text: string): void;
}

export const stdio: Omit<Out, 'format'> = {
  write: (t) => process.stdout.write(t),
  error: (t) => process.stderr.write(t),
};

const cell = (v: unknown): string => {
  if (v === undefined || v === null) return '';
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
};

/** A left-aligned text table; long cells are cut to keep rows on one line. */
export function table(rows: Record<string, unknown>[], columns: string[], maxWidth = 60): string {
  if (rows.length === 0) return '(none)\n';
  const cells = rows.map((r) => columns.map((c) => {
    const s = cell(r[c]).replace(/\s+/g, ' ');
    return s.length > maxWidth ? `${s.slice(0, maxWidth - 1)}…` : s;
  }));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n') + '\n';
}

/** RFC 4180 CSV with a header row. */
export function csv(rows: Record<string, unknown>[], columns: string[]): string {
  const esc = (v: unknown) => {
    const s = cell(v);
    return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  return [columns.join(','), ...rows.map((r) => columns.map((c) => esc(r[c])).join(','))].join('\n') + '\n';
}

/** Prints `rows` in the chosen format (JSON prints `json` when given, else the rows). */
export function print(out: Out, rows: Record<string, unknown>[], columns: string[], json?: unknown): void {
  if (out.format === 'json') out.write(`${JSON.stringify(json ?? rows, null, 2)}\n`);
  else if (out.format === 'csv') out.write(csv(rows, columns));
  else out.write(table(rows, columns));
}

import { useEffect, useState } from 'react';
import type { Api } from '../api/client';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const REGION_NAMES: Record<string, string> = { WT: 'Whole tumour', TC: 'Tumour core', ET: 'Enhancing tumour' };

function fmt(value: Json): string {
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toFixed(1);
  if (value === null) return '—';
  if (Array.isArray(value)) return value.map(fmt).join(', ');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

export function Measurements({ api, studyUid }: { api: Api; studyUid: string }) {
  const [data, setData] = useState<Record<string, Json> | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api.measurements(studyUid).then((m) => setData(m as Record<string, Json>), (e: Error) => setError(e.message));
  }, [api, studyUid]);
  if (error) return <p className="error">Measurements: {error}</p>;
  if (!data) return <p className="muted">Loading measurements…</p>;
  const regions = (data.region_volumes_ml ?? {}) as Record<string, number>;
  const warnings = (Array.isArray(data.input_warnings) ? data.input_warnings : []).map(String);
  const shown = new Set(['region_volumes_ml', 'label_volumes', 'input_warnings']);
  const rest = Object.entries(data).filter(([k, v]) => !shown.has(k) && (typeof v !== 'object' || v === null || Array.isArray(v)));
  return (
    <section className="measurements" aria-label="Measurements">
      <h3>Measurements</h3>
      {warnings.map((w) => (
        <p key={w} className="error" role="alert">
          {w}
        </p>
      ))}
      <table>
        <tbody>
          {Object.entries(regions).map(([k, v]) => (
            <tr key={k}>
              <th>{REGION_NAMES[k] ?? k} ({k})</th>
              <td>{fmt(v)} mL</td>
            </tr>
          ))}
          {rest.map(([k, v]) => (
            <tr key={k}>
              <th>{k.replace(/_/g, ' ')}</th>
              <td>{fmt(v)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

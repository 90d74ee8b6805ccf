import { useEffect, useState } from 'react';
import type { Api } from '../api/client';
import { ml, mm, mm2 } from './measurementFormat';

/** The part of the worker's measurements (glioscope_common.measurements.Measurements) the panel shows. */
export interface MeasurementsData {
  labelVolumes: { label: number; name: string; volumeMl: number }[];
  regionVolumesMl: Partial<Record<Region, number>>;
  maxAxialDiameterMm: number | null;
  perpendicularDiameterMm: number | null;
  bidimensionalProductMm2: number | null;
  hemisphere: string | null;
  lobes: string[]; // from the atlas registration, largest share first
  locationNote: string | null; // why the location is not available
  measuredOn: string | null; // the source image of the axial measurement, as the PACS names it
  quality: { overall: number; review: boolean; reviewBelow: number } | null; // the model's own estimate
  tumourDetected: boolean | null; // null: not stated
  inputWarnings: string[];
  // The sequences the model read and the regions they do not support (glioscope_common.sequence_regions);
  // measurements stored before these fields were from all four sequences.
  sequencesUsed: string[];
  sequencesMissing: string[];
  regionsNotReported: { region: Region; reason: string }[];
}

export interface Row {
  name: string;
  value: string;
}

export interface MeasurementTable {
  regions: Row[];
  labels: Row[];
  diameters: Row[];
  location: Row[];
  quality: Row[];
  notes: string[];
  sequences: string; // "Sequences used: …; not available: …; regions not reported: … because …"
}

type Region = 'WT' | 'TC' | 'ET';
const ALL_SEQUENCES = ['T1', 'T1c', 'T2', 'FLAIR'];

const REGION_NAMES: Record<Region, string> = {
  WT: 'Whole tumour (WT)',
  TC: 'Tumour core (TC)',
  ET: 'Enhancing tumour (ET)',
};
// The hemispheres the report names; "none" and "undetermined" are not a location.
const HEMISPHERES = new Set(['left', 'right', 'bilateral', 'midline']);
export const ROUNDING_NOTE = 'Each volume is rounded from its exact value, so rounded parts may not add up to the rounded total.';
export const NO_TUMOUR = 'No tumour detected by the automated segmentation.';
export const NO_MEASUREMENTS = 'No measurements for this segmentation.';

const num = (value: unknown): number | null => (typeof value === 'number' && Number.isFinite(value) ? value : null);

function lobeNames(location: unknown): string[] {
  const lobes = (location as { lobes?: unknown } | null)?.lobes;
  return Array.isArray(lobes) ? lobes.map((l: { name?: unknown }) => String(l?.name ?? '')).filter(Boolean) : [];
}

/** "image 45, series 7 (T1 post Gd)", as the report's table words it; null when not known. */
function measuredOn(value: unknown): string | null {
  const ref = value as { instance_number?: unknown; series_number?: unknown; series_description?: unknown } | null;
  const instance = num(ref?.instance_number);
  if (ref == null || instance === null) return null;
  const number = num(ref.series_number);
  const description = typeof ref.series_description === 'string' && ref.series_description ? ` (${ref.series_description})` : '';
  return `image ${instance}, ${number === null ? 'T1c series' : `series ${number}`}${description}`;
}

function quality(value: unknown): MeasurementsData['quality'] {
  const q = value as { overall?: unknown; review?: unknown; review_below?: unknown } | null;
  const overall = num(q?.overall);
  const below = num(q?.review_below);
  return overall === null || below === null ? null : { overall, review: q?.review === true, reviewBelow: below };
}

const strings = (value: unknown): string[] | null => (Array.isArray(value) ? value.map(String) : null);

function regionsNotReported(value: unknown): MeasurementsData['regionsNotReported'] {
  if (value == null || typeof value !== 'object') return [];
  return (Object.keys(REGION_NAMES) as Region[])
    .filter((key) => typeof (value as Record<string, unknown>)[key] === 'string')
    .map((key) => ({ region: key, reason: String((value as Record<string, unknown>)[key]) }));
}

/** The sentence the report opens with (glioscope_common.sequence_regions.summary_sentence), word for word. */
export function sequencesSentence(m: MeasurementsData): string {
  const text = `Sequences used: ${m.sequencesUsed.join(', ')}; not available: ${m.sequencesMissing.join(', ') || 'none'}`;
  if (m.regionsNotReported.length === 0) return `${text}; all regions reported.`;
  const byReason = new Map<string, string[]>();
  for (const { region, reason } of m.regionsNotReported) {
    const name = REGION_NAMES[region];
    byReason.set(reason, [...(byReason.get(reason) ?? []), name.charAt(0).toLowerCase() + name.slice(1)]);
  }
  const groups = [...byReason].map(([reason, regions]) => `${regions.join(' and ')}, because ${reason}`);
  return `${text}; regions not reported: ${groups.join('; ')}.`;
}

/** The measurements JSON from the gateway, typed; anything missing or malformed is left out. */
export function parseMeasurements(json: Record<string, unknown>): MeasurementsData {
  const labels = Array.isArray(json.label_volumes) ? json.label_volumes : [];
  const regions = (json.region_volumes_ml ?? {}) as Record<string, unknown>;
  const regionVolumesMl: Partial<Record<Region, number>> = {};
  for (const key of Object.keys(REGION_NAMES) as Region[]) {
    const value = num(regions[key]);
    if (value !== null) regionVolumesMl[key] = value;
  }
  return {
    labelVolumes: labels
      .map((v: Record<string, unknown>) => ({ label: num(v?.label), name: String(v?.name ?? ''), volumeMl: num(v?.volume_ml) }))
      .filter((v): v is { label: number; name: string; volumeMl: number } => v.label !== null && v.volumeMl !== null)
      .sort((a, b) => a.label - b.label),
    regionVolumesMl,
    maxAxialDiameterMm: num(json.max_axial_diameter_mm),
    perpendicularDiameterMm: num(json.perpendicular_diameter_mm),
    bidimensionalProductMm2: num(json.bidimensional_product_mm2),
    hemisphere: typeof json.hemisphere === 'string' && HEMISPHERES.has(json.hemisphere) ? json.hemisphere : null,
    lobes: lobeNames(json.location),
    locationNote: json.hemisphere === 'undetermined' && typeof json.location_note === 'string' ? json.location_note : null,
    measuredOn: measuredOn(json.measured_on),
    quality: quality(json.quality),
    tumourDetected: typeof json.tumour_detected === 'boolean' ? json.tumour_detected : null,
    inputWarnings: Array.isArray(json.input_warnings) ? json.input_warnings.map(String) : [],
    sequencesUsed: strings(json.sequences_used) ?? ALL_SEQUENCES,
    sequencesMissing: strings(json.sequences_missing) ?? [],
    regionsNotReported: regionsNotReported(json.regions_not_reported),
  };
}

/** The rows a clinician reads, worded and rounded as in the report's measurement table. The slice the
 * diameters were measured on is left to the slice naming (a grid index is not the viewer's image number). */
export function measurementTable(m: MeasurementsData): MeasurementTable {
  const notReported = new Set(m.regionsNotReported.map((r) => r.region));
  const regions = (Object.keys(REGION_NAMES) as Region[])
    .filter((key) => m.regionVolumesMl[key] !== undefined && !notReported.has(key))
    .map((key) => ({ name: REGION_NAMES[key], value: ml(m.regionVolumesMl[key] as number) }))
    .concat(m.regionsNotReported.map((r) => ({ name: REGION_NAMES[r.region], value: 'not reported' })));
  const labels = m.labelVolumes.map((v) => ({ name: v.name || `Label ${v.label}`, value: ml(v.volumeMl) }));
  const diameters: Row[] = [];
  if (m.maxAxialDiameterMm !== null) diameters.push({ name: 'Maximum axial diameter', value: mm(m.maxAxialDiameterMm) });
  if (m.perpendicularDiameterMm !== null) diameters.push({ name: 'Perpendicular diameter', value: mm(m.perpendicularDiameterMm) });
  if (m.bidimensionalProductMm2 !== null) diameters.push({ name: 'Bidimensional product', value: mm2(m.bidimensionalProductMm2) });
  if (m.measuredOn !== null && diameters.length > 0) diameters.push({ name: 'Measured on', value: m.measuredOn });
  const location: Row[] = [];
  if (m.hemisphere !== null) location.push({ name: 'Hemisphere', value: m.hemisphere });
  if (m.hemisphere !== null && m.lobes.length > 0) location.push({ name: 'Lobes (approximate)', value: m.lobes.join(', ') });
  if (m.locationNote !== null) location.push({ name: 'Location', value: `not available (${m.locationNote})` });
  const quality: Row[] = [];
  if (m.quality !== null)
    quality.push({
      name: 'Model confidence (1 = fully confident)',
      value: `${m.quality.overall.toFixed(2)}${m.quality.review ? ` (under ${m.quality.reviewBelow.toFixed(2)}: review carefully)` : ''}`,
    });
  const notes: string[] = [];
  if (m.tumourDetected === false) notes.push(NO_TUMOUR);
  if (regions.length > notReported.size && labels.length > 0) notes.push(ROUNDING_NOTE);
  if (regions.length + labels.length + diameters.length === 0) notes.push(NO_MEASUREMENTS);
  return { regions, labels, diameters, location, quality, notes, sequences: sequencesSentence(m) };
}

function Rows({ caption, rows }: { caption: string; rows: Row[] }) {
  if (rows.length === 0) return null;
  return (
    <table>
      <caption>{caption}</caption>
      <tbody>
        {rows.map((row, i) => (
          <tr key={`${i}-${row.name}`}>
            <th scope="row">{row.name}</th>
            <td>{row.value}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function MeasurementsView({ data }: { data: MeasurementsData }) {
  const table = measurementTable(data);
  return (
    <section className="measurements" aria-label="Measurements">
      <h3>Measurements</h3>
      {data.inputWarnings.map((w) => (
        <p key={w} className="error" role="alert">
          {w}
        </p>
      ))}
      <p className={data.sequencesMissing.length > 0 ? 'sequences warning' : 'sequences muted small'}>{table.sequences}</p>
      <Rows caption="Tumour regions" rows={table.regions} />
      <Rows caption="Segmentation labels" rows={table.labels} />
      <Rows caption="Axial measurement" rows={table.diameters} />
      <Rows caption="Location" rows={table.location} />
      <Rows caption="Quality" rows={table.quality} />
      {table.notes.map((note) => (
        <p key={note} className="muted small">
          {note}
        </p>
      ))}
    </section>
  );
}

export function Measurements({ api, studyUid }: { api: Api; studyUid: string }) {
  const [data, setData] = useState<MeasurementsData | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api.measurements(studyUid).then((m) => setData(parseMeasurements(m)), (e: Error) => setError(e.message));
  }, [api, studyUid]);
  if (error) return <p className="error">Measurements: {error}</p>;
  if (!data) return <p className="muted">Loading measurements…</p>;
  return <MeasurementsView data={data} />;
}

// Window/level presets for MR: MR intensities have no absolute scale, so presets are fractions of
// the series' own display range (the range the viewer picked at load).
export interface VoiRange {
  lower: number;
  upper: number;
}

export interface Preset {
  id: string;
  label: string;
  /** window centre and width as fractions of the base range */
  centre: number;
  width: number;
}

export const PRESETS: Preset[] = [
  { id: 'default', label: 'Default', centre: 0.5, width: 1 },
  { id: 'brain', label: 'Brain', centre: 0.45, width: 0.7 },
  { id: 'contrast', label: 'High contrast', centre: 0.5, width: 0.4 },
  { id: 'wide', label: 'Wide', centre: 0.55, width: 1.6 },
];

export function applyPreset(base: VoiRange, preset: Preset): VoiRange {
  const span = base.upper - base.lower;
  const centre = base.lower + span * preset.centre;
  const half = (span * preset.width) / 2;
  return { lower: centre - half, upper: centre + half };
}

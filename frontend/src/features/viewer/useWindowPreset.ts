// The window/level preset of the three MPR views, relative to the series' own window (`baseVoi`,
// read from the axial view on first use and forgotten when another series is shown).
import { useRef, useState } from 'react';
import type { Types } from '@cornerstonejs/core';
import { renderingEngine } from './cornerstone';
import { MPR_IDS } from './constants';
import { PRESETS, applyPreset, type VoiRange } from './presets';

export function useWindowPreset() {
  const baseVoi = useRef<VoiRange | null>(null);
  const [preset, setPreset] = useState('default');

  const choosePreset = (id: string) => {
    const engine = renderingEngine();
    const first = engine.getViewport('axial') as Types.IVolumeViewport | undefined;
    if (!first) return;
    if (!baseVoi.current) baseVoi.current = ((first.getProperties() ?? {}).voiRange as VoiRange | undefined) ?? null;
    if (!baseVoi.current) return;
    const range = applyPreset(baseVoi.current, PRESETS.find((p) => p.id === id)!);
    for (const id of MPR_IDS) (engine.getViewport(id) as Types.IVolumeViewport).setProperties({ voiRange: range });
    engine.renderViewports(MPR_IDS);
    setPreset(id);
  };

  return { preset, choosePreset, baseVoi };
}

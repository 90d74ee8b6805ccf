// Per-segment fill opacity of the labelmap overlay. Cornerstone 5 keeps a style per segment
// (segmentationStyle.setStyle with a segmentIndex); its labelmap renderer multiplies the segment
// colour's alpha by the style's fillAlpha (fillAlphaInactive when the segmentation is not the
// viewport's active one), and draws the outline separately, so a zero fill keeps the outline.

/** The overlay's fill opacity when the viewer opens. */
export const DEFAULT_FILL_ALPHA = 0.55;

/** A slider value (0…1, anything else clamped; not a number → the default) as a labelmap style. */
export function segmentFillStyle(opacity: number): { fillAlpha: number; fillAlphaInactive: number } {
  const alpha = Number.isFinite(opacity) ? Math.min(1, Math.max(0, opacity)) : DEFAULT_FILL_ALPHA;
  return { fillAlpha: alpha, fillAlphaInactive: alpha };
}

/** The opacity of a segment: its own when set, the default otherwise. */
export function opacityOf(opacities: Readonly<Record<number, number>>, segment: number): number {
  return opacities[segment] ?? DEFAULT_FILL_ALPHA;
}

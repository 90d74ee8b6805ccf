import type { Types } from '@cornerstonejs/core';
import type { Api, Study } from '../api/client';
import { useBrainMaskOutline } from './useBrainMaskOutline';

/** "Brain mask outline": shown only for a study whose images went through brain extraction. */
export function BrainMaskToggle(props: {
  api: Api;
  study: Study | null;
  reference: () => Promise<Types.IImageVolume>;
  viewportIds: string[];
  activeSegmentationId: string;
  ready: boolean; // the tumour overlay is on screen (it stays the active segmentation)
}) {
  const { ready, ...options } = props;
  const outline = useBrainMaskOutline(options);
  if (!outline.available) return null;
  return (
    <span className="brain-mask-toggle">
      <label title="The brain boundary found by automatic brain extraction (deepbet): review it">
        <input type="checkbox" checked={outline.shown} disabled={!ready || outline.loading} onChange={outline.toggle} />
        {' '}Brain mask outline{outline.loading ? ' (loading…)' : ''}
      </label>
      {outline.error && <span className="error" role="alert">{outline.error}</span>}
    </span>
  );
}

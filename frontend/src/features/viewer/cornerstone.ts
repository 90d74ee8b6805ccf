// Cornerstone3D is initialised once per page (React 18 StrictMode runs effects twice), and one
// rendering engine lives for the whole session: re-creating it when the viewer remounts can render
// nothing (a known Cornerstone issue), so the viewer only enables and disables its viewports.
import {
  RenderingEngine,
  cache,
  cornerstoneStreamingImageVolumeLoader,
  getRenderingEngine,
  imageLoader,
  init as coreInit,
  volumeLoader,
  type Types,
} from '@cornerstonejs/core';
import dicomImageLoader, { init as loaderInit } from '@cornerstonejs/dicom-image-loader';
import {
  BrushTool,
  CrosshairsTool,
  PanTool,
  StackScrollTool,
  ToolGroupManager,
  TrackballRotateTool,
  WindowLevelTool,
  ZoomTool,
  Enums as ToolEnums,
  addTool,
  init as toolsInit,
  utilities as toolUtilities,
} from '@cornerstonejs/tools';
import { FrameLoadError, MissingFrames, frameErrorStatus, withRetry, type FrameInfo } from './frameRetry';

export const ENGINE_ID = 'glioscope';
export const TOOL_GROUP_ID = 'glioscope-mpr';
export const TOOL_GROUP_3D_ID = 'glioscope-3d';

let ready: Promise<void> | null = null;
let tokenSource: () => Promise<string> = async () => '';

/** Where the image loader gets the bearer token for `/dicom-web` requests (set once signed in). */
export function setTokenSource(source: () => Promise<string>): void {
  tokenSource = source;
}

export function initCornerstone(): Promise<void> {
  if (!ready) {
    ready = (async () => {
      coreInit();
      toolsInit();
      loaderInit({
        maxWebWorkers: Math.max(1, Math.min(4, (navigator.hardwareConcurrency || 2) - 1)),
        beforeSend: async () => ({ Authorization: `Bearer ${await tokenSource()}` }),
      });
      registerRetryingFrameLoader();
      volumeLoader.registerUnknownVolumeLoader(
        cornerstoneStreamingImageVolumeLoader as unknown as Types.VolumeLoaderFn,
      );
      volumeLoader.registerVolumeLoader(
        'cornerstoneStreamingImageVolume',
        cornerstoneStreamingImageVolumeLoader as unknown as Types.VolumeLoaderFn,
      );
      for (const tool of [WindowLevelTool, PanTool, ZoomTool, StackScrollTool, BrushTool, TrackballRotateTool, CrosshairsTool]) addTool(tool);
      const group = ToolGroupManager.createToolGroup(TOOL_GROUP_ID)!;
      group.addTool(WindowLevelTool.toolName);
      group.addTool(PanTool.toolName);
      group.addTool(ZoomTool.toolName);
      group.addTool(StackScrollTool.toolName);
      // Brush and eraser: two instances of the BrushTool with a circular strategy each.
      group.addToolInstance(BRUSH, BrushTool.toolName, { activeStrategy: 'FILL_INSIDE_CIRCLE', brushSize: 6 });
      group.addToolInstance(ERASER, BrushTool.toolName, { activeStrategy: 'ERASE_INSIDE_CIRCLE', brushSize: 6 });
      // Crosshairs: disabled (no reference lines, no handles to catch a brush stroke) unless chosen.
      group.addTool(CrosshairsTool.toolName, { getReferenceLineColor: crosshairColour });
      const { MouseBindings } = ToolEnums;
      group.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
      group.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
      group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
      group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
      const group3d = ToolGroupManager.createToolGroup(TOOL_GROUP_3D_ID)!;
      group3d.addTool(TrackballRotateTool.toolName);
      group3d.addTool(ZoomTool.toolName);
      group3d.addTool(PanTool.toolName);
      group3d.setToolActive(TrackballRotateTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
      group3d.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
      group3d.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    })();
  }
  return ready;
}

/** Frames that could not be loaded after all tries (the viewer lists their slices). */
export const missingFrames = new MissingFrames();
// study, series and instance numbers of each `wadors:` image ID the viewer made (seriesImageIds)
const frameInfo = new Map<string, FrameInfo>();

type ImageLoadObject = { promise: Promise<unknown>; cancelFn?: () => void };
type ImageLoaderFn = (imageId: string, options?: Record<string, unknown>) => ImageLoadObject;

/**
 * The `wadors` image loader wrapped in retries: a frame request that fails with a network error or a 5xx
 * is tried again after 250, 500 and 1000 ms (frameRetry.ts). A frame that still fails is recorded in
 * `missingFrames` (and rejected, so the volume counts it as processed); one that loads is taken off.
 */
function registerRetryingFrameLoader(): void {
  const load = (dicomImageLoader.wadors as unknown as { loadImage: ImageLoaderFn }).loadImage;
  imageLoader.registerImageLoader('wadors', ((imageId: string, options?: Record<string, unknown>) => {
    let tries = 0;
    const promise = withRetry(
      () => {
        tries++;
        return load(imageId, options).promise;
      },
      { onRetry: (n, error, ms) => console.warn(`frame request failed (${frameErrorStatus(error) ?? 'error'}), try ${n + 1} in ${ms} ms: ${imageId}`) },
    ).then(
      (image) => {
        missingFrames.remove(imageId);
        return image;
      },
      (error: unknown) => {
        const failure = new FrameLoadError(imageId, frameErrorStatus(error), tries, error);
        const info = frameInfo.get(imageId);
        if (info) missingFrames.add({ ...info, imageId, status: failure.status, tries });
        console.warn(failure.message);
        throw failure;
      },
    );
    return { promise, cancelFn: undefined };
  }) as unknown as Parameters<typeof imageLoader.registerImageLoader>[1]);
  // Cornerstone's loadAndCacheImage drops the promise of cache.putImageLoadObject, which rethrows a failed
  // load: each missing frame would be an unhandled rejection (a page error). The viewer lists them, so
  // that promise's FrameLoadError is handled here; any other failure stays as it was.
  const put = cache.putImageLoadObject.bind(cache);
  cache.putImageLoadObject = ((...args: Parameters<typeof put>) => {
    const stored = put(...args);
    stored.catch((error: unknown) => {
      if (!(error instanceof FrameLoadError)) throw error;
    });
    return stored;
  }) as typeof cache.putImageLoadObject;
}

export const BRUSH = 'CircularBrush';
export const ERASER = 'CircularEraser';
export type EditMode = 'navigate' | 'crosshairs' | 'brush' | 'eraser';

const CROSSHAIR_COLOURS: Record<string, string> = { axial: 'rgb(255, 255, 0)', sagittal: 'rgb(0, 200, 255)', coronal: 'rgb(255, 120, 255)' };
/** Each viewport's reference line in the others has that viewport's colour. */
function crosshairColour(viewportId: string): string {
  return CROSSHAIR_COLOURS[viewportId] ?? 'rgb(255, 255, 0)';
}

/**
 * What the primary mouse button does: window/level, crosshairs (click or drag in one view moves the
 * others' slices), paint or erase. Only one of them is bound at a time; the crosshairs are disabled
 * outside their mode, as passive crosshairs still draw handles that would catch brush strokes.
 */
export function setEditMode(mode: EditMode): void {
  const group = ToolGroupManager.getToolGroup(TOOL_GROUP_ID);
  if (!group) return;
  const primary = [{ mouseButton: ToolEnums.MouseBindings.Primary }];
  for (const name of [WindowLevelTool.toolName, BRUSH, ERASER]) group.setToolPassive(name, { removeAllBindings: true });
  if (mode !== 'crosshairs' && group.getToolOptions(CrosshairsTool.toolName)?.mode !== ToolEnums.ToolModes.Disabled)
    group.setToolDisabled(CrosshairsTool.toolName);
  const tool = mode === 'brush' ? BRUSH : mode === 'eraser' ? ERASER : mode === 'crosshairs' ? CrosshairsTool.toolName : WindowLevelTool.toolName;
  group.setToolActive(tool, { bindings: primary });
}

/** Brush and eraser radius in mm. */
export function setBrushSize(mm: number): void {
  for (const name of [BRUSH, ERASER]) toolUtilities.segmentation.setBrushSizeForToolGroup(TOOL_GROUP_ID, mm, name);
}

export function renderingEngine(): RenderingEngine {
  return (getRenderingEngine(ENGINE_ID) as RenderingEngine | undefined) ?? new RenderingEngine(ENGINE_ID);
}

const SERIES_UID = '0020000E';
const SOP_UID = '00080018';
const SERIES_NUMBER = '00200011';
const INSTANCE_NUMBER = '00200013';

function numberTag(meta: Record<string, { Value?: unknown[] }>, tag: string): number | null {
  const value = Number(meta[tag]?.Value?.[0]);
  return meta[tag]?.Value?.length && Number.isFinite(value) ? value : null;
}

/** `wadors:` image IDs of a series, with its metadata (one request) in the loader's cache. */
export async function seriesImageIds(
  studyUid: string,
  seriesUid: string,
  authFetch: (path: string) => Promise<Response>,
): Promise<string[]> {
  const root = `${window.location.origin}/dicom-web`;
  const response = await authFetch(`/dicom-web/studies/${studyUid}/series/${seriesUid}/metadata`);
  const instances = (await response.json()) as Array<Record<string, { Value?: unknown[] }>>;
  return instances.map((meta) => {
    const series = String(meta[SERIES_UID]?.Value?.[0] ?? seriesUid);
    const sop = String(meta[SOP_UID]?.Value?.[0]);
    const imageId = `wadors:${root}/studies/${studyUid}/series/${series}/instances/${sop}/frames/1`;
    dicomImageLoader.wadors.metaDataManager.add(imageId, meta as never);
    frameInfo.set(imageId, {
      studyUid, seriesUid: series, sopUid: sop,
      seriesNumber: numberTag(meta, SERIES_NUMBER), instanceNumber: numberTag(meta, INSTANCE_NUMBER),
    });
    return imageId;
  });
}

export function volumeIdFor(seriesUid: string): string {
  return `cornerstoneStreamingImageVolume:${seriesUid}`;
}

const creating = new Map<string, Promise<Types.IImageVolume>>();

/**
 * The series' volume, created once and cached (streaming starts on the first call). Concurrent
 * callers (the sequence and the overlay effects both want the T1c) share one creation.
 */
export function ensureVolume(volumeId: string, imageIds: () => Promise<string[]>): Promise<Types.IImageVolume> {
  const cached = cache.getVolume(volumeId);
  if (cached) return Promise.resolve(cached);
  let pending = creating.get(volumeId);
  if (!pending) {
    pending = (async () => {
      const volume = await volumeLoader.createAndCacheVolume(volumeId, { imageIds: await imageIds() });
      (volume as unknown as { load: () => void }).load();
      return volume;
    })().finally(() => creating.delete(volumeId));
    creating.set(volumeId, pending);
  }
  return pending;
}

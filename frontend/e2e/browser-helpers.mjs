// Helpers shared by the browser tests that drive Debian's chromium with playwright-core:
// e2e/viewer.spec.mjs (our viewer) and tests/interop/ohif/ohif.spec.mjs (OHIF). No imports: the module
// is loaded from either folder, each with its own node_modules.

// The value of an environment variable, or `fallback`; neither: an error naming it.
export const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};

export function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

// chromium.launch() arguments: headless, software WebGL (SwiftShader), nothing reaching the network.
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--enable-unsafe-swiftshader', '--use-angle=swiftshader',
];

// Count pixels of a screenshot (PNG) by colour class, decoded in the page (no PNG library needed):
// `pixels` in all, `grey` lit grey ones (the MR image), `coloured` ones, and per name of `colours`
// ({name: [r, g, b]}) the coloured pixels of that colour.
export async function colourCounts(page, png, colours) {
  return page.evaluate(
    async ({ b64, colours }) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = canvas.getContext('2d');
      ctx.drawImage(bitmap, 0, 0);
      const { data } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
      const counts = Object.fromEntries(Object.keys(colours).map((k) => [k, 0]));
      let grey = 0;
      let coloured = 0;
      for (let p = 0; p < data.length; p += 4) {
        const [r, g, b] = [data[p], data[p + 1], data[p + 2]];
        if (Math.max(r, g, b) - Math.min(r, g, b) < 40) { // grey: the MR image
          if (r + g + b > 90) grey++;
          continue;
        }
        coloured++;
        // the overlay is blended over grey: classify by the chroma direction of the segment colour
        let best = null;
        let bestScore = -Infinity;
        for (const [name, [cr, cg, cb]] of Object.entries(colours)) {
          const mean = (cr + cg + cb) / 3;
          const pm = (r + g + b) / 3;
          const v1 = [cr - mean, cg - mean, cb - mean];
          const v2 = [r - pm, g - pm, b - pm];
          const score = (v1[0] * v2[0] + v1[1] * v2[1] + v1[2] * v2[2]) / (Math.hypot(...v1) * Math.hypot(...v2) || 1);
          if (score > bestScore) [best, bestScore] = [name, score];
        }
        if (best && bestScore > 0.9) counts[best]++;
      }
      return { pixels: data.length / 4, grey, coloured, counts };
    },
    { b64: png.toString('base64'), colours },
  );
}

// Sign in on the platform's page at `url` (our viewer) and wait for the worklist's table.
export async function signIn(page, url, username, password) {
  await page.goto(url);
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  await page.waitForSelector('table.studies tbody tr', { timeout: 30_000 });
}

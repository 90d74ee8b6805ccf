import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';
import { viteCommonjs } from '@originjs/vite-plugin-commonjs';

// Cornerstone3D + Vite (see the cornerstonejs/vite-react-cornerstone3d example): dicom-parser is
// CommonJS, the image loader's decode worker is an ES module worker, and minification would rename
// the tool classes Cornerstone looks up by name.
export default defineConfig({
  base: './',
  plugins: [react(), viteCommonjs()],
  optimizeDeps: {
    exclude: ['@cornerstonejs/dicom-image-loader'],
    include: ['dicom-parser'],
  },
  worker: { format: 'es' },
  build: { minify: false, sourcemap: false, chunkSizeWarningLimit: 8000, target: 'es2022' },
  server: {
    proxy: { '/api': 'http://127.0.0.1:8000', '/dicom-web': 'http://127.0.0.1:8000' },
  },
});

import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import AutoImport from 'unplugin-auto-import/vite'
import Components from 'unplugin-vue-components/vite'
import { ElementPlusResolver } from 'unplugin-vue-components/resolvers'

// During development the API is proxied to the services' own ports (or to the gateway):
// ESTATEDESK_API=http://127.0.0.1:PORT npm run dev
const api = process.env.ESTATEDESK_API || 'http://127.0.0.1:8000'

export default defineConfig({
  base: '/',
  plugins: [
    vue(),
    // Element Plus on demand: only the components (and their CSS) a route uses.
    AutoImport({ resolvers: [ElementPlusResolver()] }),
    Components({ resolvers: [ElementPlusResolver()], dts: false }),
  ],
  // The dashboard's chunk holds ECharts (~600 kB minified, ~170 kB gzip); only /dashboard loads it.
  build: { outDir: 'dist', manifest: true, reportCompressedSize: false, chunkSizeWarningLimit: 700 },
  server: { proxy: { '/v1': { target: api, changeOrigin: true } } },
})

// Prints the gzip size of the JavaScript (and CSS) a browser loads for a route, by walking
// Vite's manifest from the entry through the route chunk's static imports.
import { readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'

const dist = new URL('../dist/', import.meta.url)
const manifest = JSON.parse(readFileSync(new URL('.vite/manifest.json', dist)))
const LIMIT = 400 * 1024

function collect(key, seen) {
  if (seen.has(key)) return
  seen.add(key)
  for (const dep of manifest[key].imports || []) collect(dep, seen)
}

function measure(entries) {
  const seen = new Set()
  for (const key of entries) collect(key, seen)
  let js = 0, css = 0
  const files = new Set()
  for (const key of seen) {
    files.add(manifest[key].file)
    for (const c of manifest[key].css || []) files.add(c)
  }
  for (const file of files) {
    const size = gzipSync(readFileSync(new URL(file, dist)), { level: 9 }).length
    if (file.endsWith('.js')) js += size; else css += size
  }
  return { js, css }
}

const entry = Object.keys(manifest).find((k) => manifest[k].isEntry)
const routes = {
  'department worklist (/worklist)': ['src/views/Layout.vue', 'src/views/Worklist.vue'],
  'login (/login)': ['src/views/Login.vue'],
  'quality dashboard with ECharts (/dashboard)': ['src/views/Dashboard.vue'],
}
let failed = false
for (const [name, views] of Object.entries(routes)) {
  const lost = views.filter((v) => !manifest[v])
  if (lost.length) { console.error(`no chunk for ${lost}`); failed = true; continue }
  const { js, css } = measure([entry, ...views])
  const kb = (n) => (n / 1024).toFixed(1) + ' KB'
  console.log(`console: JavaScript for ${name}: ${kb(js)} gzip (CSS ${kb(css)} gzip; target < 400 KB JS)`)
  if (name.startsWith('department') && js >= LIMIT) failed = true
}
process.exit(failed ? 1 : 0)

// Files the API makes (printed forms, xlsx reports) need the bearer token, so they are
// fetched and handed to the browser as blobs rather than linked.
import { ApiError } from './api.js'
import { session } from './session.js'

async function fetchBlob(path) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${session.token}` } })
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null))
  return res.blob()
}

function handOver(blob, use) {
  const url = URL.createObjectURL(blob)
  use(url)
  setTimeout(() => URL.revokeObjectURL(url), 60000)
}

/** Opens a printable page (HTML/PDF) of the API in a new tab. Throws ApiError. */
export async function openInTab(path) {
  handOver(await fetchBlob(path), (url) => window.open(url, '_blank'))
}

/** Saves a file of the API (e.g. a report's .xlsx) under `filename`. Throws ApiError. */
export async function download(path, filename) {
  handOver(await fetchBlob(path), (url) => {
    const a = document.createElement('a')
    a.href = url
    a.download = filename
    a.click()
  })
}

// The owners' pages talk to the same /v1 API with an owner token (never a staff one),
// kept in this browser with the unit it binds. Errors carry the API's Chinese reason.
import { reactive } from 'vue'

const KEY = 'estatedesk.owner'
const DEVICE = 'estatedesk.device'

export const owner = reactive(JSON.parse(localStorage.getItem(KEY) || 'null') || { token: null })

export function bound(data) {
  Object.assign(owner, {
    token: data.token, estate: data.estate, estateName: data.estate_name, unit: data.unit,
    expiresAt: data.expires_at, issuedAt: new Date().toISOString(),
  })
  localStorage.setItem(KEY, JSON.stringify(owner))
}

/** The binding lasts until it is removed; its token is renewed once past half its life
 * (on opening the pages), so an owner who keeps coming back never binds again. */
export async function renewIfDue() {
  if (!owner.token || !owner.expiresAt || !owner.issuedAt) return
  const issued = Date.parse(owner.issuedAt)
  const expires = Date.parse(owner.expiresAt)
  if (Number.isNaN(issued) || Number.isNaN(expires) || Date.now() < issued + (expires - issued) / 2) return
  try {
    bound(await oapi('POST', `/v1/owner/estates/${owner.estate}/session/renew`))
  } catch {
    // A removed binding answers 401 and `oapi` unbinds; anything else: try next time.
  }
}

export function unbound() {
  Object.assign(owner, { token: null, estate: null, estateName: null, unit: null })
  localStorage.removeItem(KEY)
}

/** A random id of this browser, for the per-device limits (no fingerprinting). */
function deviceId() {
  let id = localStorage.getItem(DEVICE)
  if (!id) {
    id = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('')
    localStorage.setItem(DEVICE, id)
  }
  return id
}

export class OwnerError extends Error {
  constructor(status, body) {
    super(body?.error_zh || body?.error || `HTTP ${status}`)
    this.status = status
    this.body = body || {}
  }
}

/** One call; `body` is JSON, or a Blob sent as it is (a photo). */
export async function oapi(method, path, body) {
  const headers = { Accept: 'application/json', 'X-Device-Id': deviceId() }
  if (owner.token) headers.Authorization = `Bearer ${owner.token}`
  let payload
  if (body instanceof Blob) {
    headers['Content-Type'] = body.type
    payload = body
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json'
    payload = JSON.stringify(body)
  }
  let res
  try {
    res = await fetch(path, { method, headers, body: payload })
  } catch {
    throw new OwnerError(0, { error_zh: '网络连接失败，请稍后再试' })
  }
  if (res.status === 204) return null
  const data = await res.json().catch(() => null)
  if (!res.ok) {
    const details = (data?.details || []).map((d) => d.message_zh).filter(Boolean)
    const err = new OwnerError(res.status, data)
    if (details.length) err.message += `（${details.join('；')}）`
    if (res.status === 401 && owner.token && !path.endsWith('/bind')) unbound()
    throw err
  }
  return data
}

export const ownerPath = (rest = '') => `/v1/owner/estates/${encodeURIComponent(owner.estate)}${rest}`

/** Times as the API gives them (the estate's zone): "MM-DD HH:mm". */
export const when = (iso) => (iso ? String(iso).slice(5, 16).replace('T', ' ') : '')

/** A phone photo shrunk in the browser (longest side 1600 px, JPEG) so it stays under the
 *  upload limit; a small PNG or JPEG goes as it is. */
export async function shrink(file, maxBytes = 900 * 1024) {
  if (file.size <= maxBytes && ['image/jpeg', 'image/png'].includes(file.type)) return file
  const bitmap = await createImageBitmap(file)
  const scale = Math.min(1, 1600 / Math.max(bitmap.width, bitmap.height))
  const canvas = document.createElement('canvas')
  canvas.width = Math.round(bitmap.width * scale)
  canvas.height = Math.round(bitmap.height * scale)
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height)
  for (const quality of [0.85, 0.7, 0.5]) {
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', quality))
    if (blob && blob.size <= maxBytes) return blob
  }
  throw new OwnerError(413, { error_zh: '照片太大，请换一张' })
}

export const KINDS = [
  ['repair', '报修'], ['complaint', '投诉'], ['inquiry', '咨询'], ['suggestion', '建议'], ['praise', '表扬'],
]
export const KIND_WORDS = Object.fromEntries(KINDS)
export const CATEGORIES = ['水电', '门窗', '公共设施', '电梯', '环境卫生', '绿化', '安全', '停车', '噪音', '其他']
export const REPLY_METHODS = [['online', '网上'], ['phone', '电话'], ['visit', '上门'], ['letter', '书面']]

import { session, signedOut } from './session.js'
import { i18n } from './i18n.js'

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`)
    this.status = status
    this.body = body || {}
  }
}

let onUnauthorised = () => {}
export function whenUnauthorised(fn) {
  onUnauthorised = fn
}

/** One call to the API (same origin, /v1/...), with the bearer token. */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' }
  if (session.token) headers.Authorization = `Bearer ${session.token}`
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  let res
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  } catch (e) {
    throw new ApiError(0, { error: 'network error: ' + e.message, error_zh: '网络连接失败' })
  }
  if (res.status === 204) return null
  const data = await res.json().catch(() => null)
  if (!res.ok) {
    const err = new ApiError(res.status, data)
    if (res.status === 401 && !path.startsWith('/v1/auth/login')) {
      signedOut()
      onUnauthorised(err)
    }
    throw err
  }
  return data
}

export const get = (path) => api('GET', path)
export const post = (path, body = {}) => api('POST', path, body)

/** The message to show for an error: error_zh in Chinese, error in English. */
export function errorText(e) {
  const body = e?.body || {}
  const zh = i18n.global.locale.value === 'zh'
  const main = (zh ? body.error_zh || body.error : body.error || body.error_zh) || e?.message || String(e)
  const details = (body.details || []).map((d) => (zh ? d.message_zh || d.message : d.message)).filter(Boolean)
  return details.length && !details.every((d) => main.includes(d)) ? `${main}（${details.join('；')}）` : main
}

export const estatePath = (rest = '') => `/v1/estates/${encodeURIComponent(session.estate)}${rest}`

/** In Chinese, the API's English `error` when it says more than the short `error_zh`. */
export function errorDetail(e) {
  const body = e?.body || {}
  return i18n.global.locale.value === 'zh' && body.error && body.error !== body.error_zh ? body.error : ''
}

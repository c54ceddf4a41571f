import { reactive } from 'vue'
import { i18n } from './i18n.js'

const KEY = 'estatedesk.session'
const ESTATE_KEY = 'estatedesk.estate'
const RENEW_BEFORE_MS = 10 * 60 * 1000

export const session = reactive({
  token: null,
  expiresAt: null,
  // When this browser received the token (its own clock) and how long the token lives
  // (from the token's iat/exp): a browser whose clock is off by days neither drops a good
  // session nor keeps renewing; the server's refusal (401) is what ends a session.
  receivedAt: null,
  lifetimeMs: null,
  staff: null,
  estate: localStorage.getItem(ESTATE_KEY),
  directory: null, // the estate as intake's directory gives it (departments, heads, buildings)
  timezone: 'Asia/Shanghai',
})

const code = (x) => (typeof x === 'string' ? x : x?.code ?? x?.estate)

export function estates() {
  return (session.staff?.estates || []).map(code).filter((c) => c && c !== '*')
}

export function roles() {
  return session.staff?.roles || []
}

export function hasRole(...wanted) {
  const mine = roles()
  return mine.includes('company_admin') || wanted.some((r) => mine.includes(r))
}

/** A department's name: the estate's own (its directory entry), else the standard name
 * of RULES.md "Departments" in the chosen language, else the code itself. */
export function departmentName(code) {
  const own = session.directory?.departments?.find((d) => d.code === code)?.name
  if (own) return own
  const key = `department.${code}`
  return i18n.global.te(key) ? i18n.global.t(key) : code
}

/** The departments the staff member acts for in the current estate. */
export function departments() {
  return (session.staff?.departments || [])
    .filter((d) => typeof d === 'string' || !d.estate || d.estate === session.estate)
    .map((d) => (typeof d === 'string' ? d : d.code ?? d.department))
}

/** Milliseconds the token lives (exp - iat of its claims), null when unreadable. */
function lifetimeOf(token) {
  try {
    const claims = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')))
    return (claims.exp - claims.iat) * 1000
  } catch {
    return null
  }
}

/** Milliseconds left by this browser's own clock since it received the token. */
function remainingMs() {
  if (session.receivedAt == null || session.lifetimeMs == null) return null
  return session.receivedAt + session.lifetimeMs - Date.now()
}

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) || 'null')
    if (saved && saved.token) {
      Object.assign(session, {
        token: saved.token, expiresAt: saved.expiresAt, staff: saved.staff,
        receivedAt: saved.receivedAt ?? null, lifetimeMs: saved.lifetimeMs ?? null,
      })
      const left = remainingMs()
      if (left != null && left <= 0) signedOut()
    }
  } catch { /* a damaged entry is dropped */ }
  if (session.token && !estates().includes(session.estate) && !companyWide()) session.estate = estates()[0] || null
}

/** Head-office staff act for every estate ('*'): they pick one from the company's list. */
export function companyWide() {
  return (session.staff?.estates || []).map(code).includes('*')
}

export function signedIn(data) {
  session.token = data.token
  session.expiresAt = data.expires_at
  session.staff = data.staff
  session.receivedAt = Date.now()
  session.lifetimeMs = lifetimeOf(data.token)
  if (!estates().includes(session.estate) && !companyWide()) session.estate = estates()[0] || null
  localStorage.setItem(KEY, JSON.stringify({
    token: session.token, expiresAt: session.expiresAt, staff: session.staff,
    receivedAt: session.receivedAt, lifetimeMs: session.lifetimeMs,
  }))
  if (session.estate) localStorage.setItem(ESTATE_KEY, session.estate)
  scheduleRenewal()
}

export function chooseEstate(estate) {
  session.estate = estate
  session.directory = null
  localStorage.setItem(ESTATE_KEY, estate)
}

export function signedOut() {
  clearTimeout(renewTimer)
  session.token = null
  session.expiresAt = null
  session.receivedAt = null
  session.lifetimeMs = null
  session.staff = null
  session.directory = null
  localStorage.removeItem(KEY)
}

let renewTimer = null
let renewer = null

/** `fn` renews the token (POST /v1/auth/renew); called ten minutes before it expires. */
export function onRenew(fn) {
  renewer = fn
  scheduleRenewal()
}

function scheduleRenewal() {
  clearTimeout(renewTimer)
  if (!session.token || !renewer) return
  const left = remainingMs()
  if (left == null) return
  const wait = Math.max(5000, left - RENEW_BEFORE_MS)
  renewTimer = setTimeout(() => renewer(), Math.min(wait, 2 ** 31 - 1))
}

load()

import { reactive } from 'vue'

const KEY = 'estatedesk.session'
const ESTATE_KEY = 'estatedesk.estate'
const RENEW_BEFORE_MS = 10 * 60 * 1000

export const session = reactive({
  token: null,
  expiresAt: null,
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

/** The departments the staff member acts for in the current estate. */
export function departments() {
  return (session.staff?.departments || [])
    .filter((d) => typeof d === 'string' || !d.estate || d.estate === session.estate)
    .map((d) => (typeof d === 'string' ? d : d.code ?? d.department))
}

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) || 'null')
    if (saved && saved.token && (!saved.expiresAt || Date.parse(saved.expiresAt) > Date.now())) {
      Object.assign(session, { token: saved.token, expiresAt: saved.expiresAt, staff: saved.staff })
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
  if (!estates().includes(session.estate) && !companyWide()) session.estate = estates()[0] || null
  localStorage.setItem(KEY, JSON.stringify({ token: session.token, expiresAt: session.expiresAt, staff: session.staff }))
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
  if (!session.token || !session.expiresAt || !renewer) return
  const wait = Math.max(5000, Date.parse(session.expiresAt) - Date.now() - RENEW_BEFORE_MS)
  renewTimer = setTimeout(() => renewer(), Math.min(wait, 2 ** 31 - 1))
}

load()

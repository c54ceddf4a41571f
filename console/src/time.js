import { ref } from 'vue'

// Times are shown exactly as the API gives them: in the estate's zone, with its offset.
// Nothing here converts to the browser's zone.

export function fmt(iso) {
  if (!iso) return '—'
  return String(iso).slice(0, 16).replace('T', ' ')
}

function wallParts(ms, tz) {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone: tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).formatToParts(new Date(ms))
  const p = Object.fromEntries(parts.map((x) => [x.type, x.value]))
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}:${p.second}`
}

const asUtc = (wall) => Date.parse(wall + 'Z')

/** The current wall-clock time in the estate's zone, "YYYY-MM-DDTHH:mm:ss". */
export function nowIn(tz) {
  return wallParts(serverNow(), tz)
}

/** A wall-clock time of the estate ("YYYY-MM-DDTHH:mm:ss") as an ISO instant with the estate's offset. */
export function withOffset(wall, tz) {
  if (!wall) return null
  let guess = asUtc(wall)
  for (let i = 0; i < 2; i++) guess = asUtc(wall) - (asUtc(wallParts(guess, tz)) - guess)
  const minutes = Math.round((asUtc(wallParts(guess, tz)) - guess) / 60000)
  const sign = minutes < 0 ? '-' : '+'
  const abs = Math.abs(minutes)
  const hh = String(Math.floor(abs / 60)).padStart(2, '0')
  const mm = String(abs % 60).padStart(2, '0')
  return `${wall}${sign}${hh}:${mm}`
}

// The services' clock minus the browser's, in ms (GET /v1/clock): countdowns follow the
// server's time, which may differ from the browser's (and is moved in tests).
// A ref, so a countdown already on screen re-renders when the offset arrives.
const serverOffset = ref(0)

/** Sets the offset from the server's clock; `fetchClock` resolves to {now: ISO instant}. */
export async function syncClock(fetchClock) {
  const sent = Date.now()
  const { now } = await fetchClock()
  const received = Date.now()
  serverOffset.value = Date.parse(now) - (sent + received) / 2
  clockSyncs.value += 1
}

/** How many times the server's clock was read: a screen that opens on "this month" or
 * "today" follows the server's calendar once it is known. */
export const clockSyncs = ref(0)

/** The server's current instant, in ms since the epoch. */
export const serverNow = () => Date.now() + serverOffset.value

/** Minutes from the server's now until an ISO instant (negative when past). */
export function minutesUntil(iso) {
  return Math.round((Date.parse(iso) - serverNow()) / 60000)
}

/** An ISO instant on the wall clock of `tz`, "YYYY-MM-DDTHH:mm:ss" (for answers that mix
 * estates of different zones: each row shown in its own estate's zone). */
export function inZone(iso, tz) {
  return wallParts(Date.parse(iso), tz)
}

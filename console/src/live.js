// Live lists: a screen names the ticket events that change its list and is told (once
// per burst) when one arrives for the current estate, from the gateway's /v1/live
// stream. The stream ends when the token expires, the sign-in ends or the staff member
// leaves the estate's staff: the console then asks for a sign-in again.
import { onBeforeUnmount, reactive } from 'vue'
import { session, signedOut } from './session.js'
import { openStream } from './sse.js'
import { router } from './router.js'

const BURST_MS = 300
// The list is read from a service that consumes the same event on its own schedule (the
// report's analytics, the worklist's dispatch): read once more after it has settled.
const SETTLE_MS = 2500

/** `events`: event names (e.g. ['assigned', 'acknowledged']) or null for every one;
 * `onChange()` re-reads the list. Returns reactive { connected, last } for the screen. */
export function useLive(events, onChange) {
  const state = reactive({ connected: false, last: null })
  if (!session.token || !session.estate) return state
  let timer = null
  let settle = null
  let opened = false
  const changed = () => {
    clearTimeout(timer)
    clearTimeout(settle)
    timer = setTimeout(onChange, BURST_MS)
    settle = setTimeout(onChange, SETTLE_MS)
  }
  const ended = () => {
    state.connected = false
    signedOut()
    const here = router.currentRoute.value.fullPath
    router.push({ name: 'login', query: { expired: '1', next: here } })
  }
  const stream = openStream(`/v1/live?estate=${encodeURIComponent(session.estate)}`, session.token, {
    ready: () => {
      state.connected = true
      if (opened) changed() // back after a drop: events may have been missed
      opened = true
    },
    ticket: (data) => {
      const notice = JSON.parse(data)
      state.last = notice
      if (!events || events.includes(notice.event)) changed()
    },
    error: () => { state.connected = false },
    end: ended,
    refused: ended,
  })
  onBeforeUnmount(() => {
    clearTimeout(timer)
    clearTimeout(settle)
    stream.close()
  })
  return state
}

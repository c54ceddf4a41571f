// Server-sent events read with fetch, so the token travels in the Authorization header
// and never in an address (EventSource cannot send headers). Reconnects after a dropped
// connection; stops for good on `end` (the server's word that the token expired, was
// signed out or its staff member left the directory) and on a 401/403 refusal.

const RETRY_MS = 2000

/** Opens `path` with `token`; `handlers` are called by event name with the event's data
 * (plus `open`, `error`, and `refused(status, body)`). Returns { close() }. */
export function openStream(path, token, handlers) {
  let controller = null
  let closed = false
  let retry = null

  const call = (name, ...args) => { if (!closed && handlers[name]) handlers[name](...args) }

  function dispatch(block) {
    let event = 'message'
    const data = []
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue
      const colon = line.indexOf(':')
      const field = colon < 0 ? line : line.slice(0, colon)
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
      if (field === 'event') event = value
      else if (field === 'data') data.push(value)
    }
    if (data.length) call(event, data.join('\n'))
    if (event === 'end') close()
  }

  async function run() {
    controller = new AbortController()
    try {
      const res = await fetch(path, {
        headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' }, signal: controller.signal,
      })
      if (res.status === 401 || res.status === 403) {
        call('refused', res.status, await res.json().catch(() => ({})))
        close()
        return
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`)
      call('open')
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
      let buffer = ''
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        buffer += value.replace(/\r\n?/g, '\n')
        let cut
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          dispatch(buffer.slice(0, cut))
          buffer = buffer.slice(cut + 2)
          if (closed) return
        }
      }
      throw new Error('stream ended')
    } catch (e) {
      if (closed) return
      call('error', e)
      retry = setTimeout(run, RETRY_MS)
    }
  }

  function close() {
    closed = true
    clearTimeout(retry)
    if (controller) controller.abort()
  }

  run()
  return { close }
}

import { createApp } from 'vue'
import App from './App.vue'
import { router } from './router.js'
import { i18n } from './i18n.js'
import { post, whenUnauthorised } from './api.js'
import { onRenew, session, signedIn, signedOut } from './session.js'
import 'element-plus/theme-chalk/base.css'
import './style.css'

// The token lasts a shift (8 h); it is renewed ten minutes before it runs out.
onRenew(async () => {
  if (!session.token) return
  try {
    signedIn(await post('/v1/auth/renew'))
  } catch {
    signedOut()
    router.push({ name: 'login', query: { expired: '1' } })
  }
})
whenUnauthorised(() => {
  const here = router.currentRoute.value
  if (here.name !== 'login') router.push({ name: 'login', query: { expired: '1', next: here.fullPath } })
})

createApp(App).use(i18n).use(router).mount('#app')

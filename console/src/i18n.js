import { createI18n } from 'vue-i18n'
import { messages } from './messages.js'

export const LANG_KEY = 'estatedesk.lang'
const saved = localStorage.getItem(LANG_KEY)

export const i18n = createI18n({
  legacy: false,
  locale: saved === 'en' ? 'en' : 'zh',
  fallbackLocale: 'zh',
  messages,
})

export function setLanguage(lang) {
  i18n.global.locale.value = lang
  localStorage.setItem(LANG_KEY, lang)
  document.documentElement.lang = lang === 'en' ? 'en' : 'zh-CN'
}
setLanguage(i18n.global.locale.value)

// A refusal shown in full: the Chinese title and, in Chinese, the service's own English
// reason when it says more (which value, which rule), so nobody is left with "无权执行此操作".
import { errorDetail, errorText } from './api.js'

export function showError(e) {
  const detail = errorDetail(e)
  ElMessage.error({ message: detail ? `${errorText(e)}：${detail}` : errorText(e), duration: 10000 })
}

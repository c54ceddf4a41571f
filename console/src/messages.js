// Console texts. Chinese first (the staff's language); English for the same keys.
import { withDeskMessages } from './messages-desk.js'
import { frontline } from './messages-frontline.js'

const zh = {
  app: { title: 'EstateDesk 客服工作台', short: '客服工作台' },
  lang: { toggle: 'English' },
  login: {
    title: '员工登录', login: '工号或手机号', password: '密码', submit: '登录',
    required: '请输入工号（或手机号）和密码', hint: '登录后 8 小时内有效，期间自动续期',
  },
  layout: { estate: '小区', logout: '退出登录', loggedOut: '已退出登录', expired: '登录已失效，请重新登录', menu: '菜单' },
  menu: { register: '前台受理', worklist: '部门工单', callbacks: '回访', mine: '我的首问', ticket: '工单详情', ownerDesk: '业主自助' },
  ownerDesk: {
    title: '业主自助', requests: '网上报事', messages: '已发送消息', units: '房屋绑定', noRequests: '暂无网上报事',
    anonymous: '匿名', photos: '{n} 张照片', open: '受理（我为首问责任人）', sentAt: '发送时间', recipient: '接收人',
    text: '内容', qr: '房屋二维码', issueCode: '发放验证码', code: '{unit} 的验证码：{code}', bound: '已绑定',
    boundAt: '绑定时间', device: '设备', unbind: '解除', onFile: '登记住户',
  },
  kind: {
    inquiry: '咨询', suggestion: '建议', complaint: '投诉', praise: '表扬', repair: '报修',
    special_service: '特约服务', situation_report: '情况反映', activity: '社区活动',
  },
  channel: {
    walk_in: '来访', phone: '来电', letter: '来信', online: '网上', walk_around_visit: '走访',
    relayed_by_employee: '员工转达', escalated_from_above: '上级转来',
  },
  repairClass: {
    emergency: '紧急维修', general: '一般维修', simple: '简单维修', appointment: '预约维修',
    commissioned_immediate: '委托立即维修', project: '维修工程',
  },
  severity: { serious: '严重', not_serious: '不严重' },
  urgency: { urgent: '紧急', not_urgent: '不紧急' },
  replyMethod: { phone: '电话', visit: '上门', letter: '书面', online: '网上', none: '无需回复' },
  status: {
    open: '处理中', in_handling: '处理中', completed: '已完成待回访', closed: '已关闭', invalid: '无效',
    pending: '待回访', done: '已回访', cancelled: '已取消', reopened: '已重新派单',
    assigned: '待签收', acknowledged: '已签收', arrived: '已到场', signed_back: '已回签', transferred: '已转派',
  },
  register: {
    title: '前台受理', kind: '类别', channel: '受理渠道', category: '事项分类', repairClass: '维修类别',
    building: '楼栋', unit: '单元房号', unitHint: '楼栋-单元-房号，如 1-2-301', location: '地点',
    description: '内容描述', severity: '严重程度', urgency: '紧急程度', replyMethod: '回复方式',
    replyAgreedBy: '约定回复时间', appointment: '预约上门时间', ownerSigned: '业主已当面签字',
    submit: '登记', saved: '已登记', formNumber: '会签单号', another: '再登记一单', open: '查看工单',
    zone: '时间均为小区当地时间（{tz}）', descriptionRequired: '请填写内容描述',
  },
  worklist: {
    title: '部门工单', department: '部门', empty: '本部门暂无待办工单', refresh: '刷新',
    acknowledge: '签收', arrive: '到场', signBack: '回签', reschedule: '改约', detail: '详情',
    accepted: '受理时间', nextDue: '下一时限', overdue: '已超时', round: '第 {n} 轮',
    opinion: '处理意见', result: '处理结果', verifiedBy: '审核人（部门主管）', newAppointment: '新预约时间',
    note: '留言及原因', confirm: '确定', cancel: '取消', done: '已提交', signBackTitle: '回签会签单',
    rescheduleTitle: '业主不在家：改约', noDepartment: '您的账号未关联部门',
  },
  callbacks: {
    title: '回访', empty: '暂无待回访', due: '回访时限', method: '回访方式', record: '记录回访',
    handledInTime: '处理是否及时', resultSatisfied: '对处理结果是否满意', attitudeSatisfied: '对服务态度是否满意',
    suggestions: '业主意见或建议', yes: '是', no: '否', satisfied: '满意', unsatisfied: '不满意',
    closed: '业主满意，工单已关闭', reopened: '业主不满意，已重新派给 {departments}（第 {round} 轮）',
    recorded: '已记录', overdue: '逾期 {minutes} 分钟', recordTitle: '记录回访结果', filter: '范围',
    pending: '待回访', overdueOnly: '已逾期', doneList: '已回访',
  },
  ticket: {
    title: '工单详情', request: '受理信息', form: '会签单', deadlines: '时限', escalations: '升级',
    callbacks: '回访', archived: '归档会签单', openArchive: '打开归档会签单', notArchived: '尚未归档',
    firstContact: '首问责任人', receivedAt: '受理时间', status: '状态', round: '轮次', department: '部门',
    line: '部门处理', clock: '时限', dueAt: '到期', metAt: '完成', outcome: '结果', rung: '升级层级',
    escalatedAt: '升级时间', reason: '原因', signature: '业主签字', notFound: '找不到该工单',
    lookup: '按会签单号或工单号查找', search: '查找', closedAt: '关闭时间', completedAt: '完成时间',
    acknowledgedAt: '签收', arrivedAt: '到场', signedBackAt: '回签', opinion: '意见', result: '结果',
    verifiedBy: '审核', doneAt: '回访时间', answers: '回访答复', noCallbacks: '暂无回访',
  },
  clock: { acknowledge: '签收时限', arrival: '到场时限', repair_slip_return: '维修单交回', reply: '答复业主', tracking: '跟踪至回访' },
  outcome: { met: '按时', superseded: '已结转', cancelled: '已取消', breached: '超时' },
  signature: { signed: '已签字', later: '待补签', not_required: '无需签字' },
  purpose: { satisfaction: '满意度回访', repair_check: '维修质量检查', midway_check: '服务中途回访', thanks: '致谢回访' },
  mine: { title: '我的首问', empty: '暂无您首问的工单', nextDue: '下一时限', signatureOwed: '待补签' },
  common: { loading: '加载中…', none: '无', minutesLeft: '剩 {n} 分钟', minutesLate: '超 {n} 分钟' },
}

const en = {
  app: { title: 'EstateDesk staff console', short: 'Staff console' },
  lang: { toggle: '中文' },
  login: {
    title: 'Staff sign-in', login: 'Staff id or phone', password: 'Password', submit: 'Sign in',
    required: 'Enter your staff id (or phone) and password', hint: 'A sign-in lasts 8 hours and renews itself',
  },
  layout: { estate: 'Estate', logout: 'Sign out', loggedOut: 'Signed out', expired: 'Your sign-in expired; please sign in again', menu: 'Menu' },
  menu: { register: 'Register', worklist: 'Department worklist', callbacks: 'Callbacks', mine: 'My first-contact requests', ticket: 'Ticket detail', ownerDesk: 'Owners online' },
  ownerDesk: {
    title: 'Owners online', requests: 'Online requests', messages: 'Sent messages', units: 'Unit binding',
    noRequests: 'No online requests', anonymous: 'anonymous', photos: '{n} photos',
    open: 'Open (I am the first contact)', sentAt: 'Sent', recipient: 'To', text: 'Text', qr: 'Unit QR code',
    issueCode: 'Issue a code', code: 'Code for {unit}: {code}', bound: 'Bound', boundAt: 'Bound at', device: 'Device',
    unbind: 'Remove', onFile: 'On file',
  },
  kind: {
    inquiry: 'Inquiry', suggestion: 'Suggestion', complaint: 'Complaint', praise: 'Praise', repair: 'Repair',
    special_service: 'Special service', situation_report: 'Situation report', activity: 'Community activity',
  },
  channel: {
    walk_in: 'Walk-in', phone: 'Phone', letter: 'Letter', online: 'Online', walk_around_visit: 'Walk-around visit',
    relayed_by_employee: 'Relayed by employee', escalated_from_above: 'Escalated from above',
  },
  repairClass: {
    emergency: 'Emergency', general: 'General', simple: 'Simple', appointment: 'By appointment',
    commissioned_immediate: 'Commissioned, immediate', project: 'Repair project',
  },
  severity: { serious: 'Serious', not_serious: 'Not serious' },
  urgency: { urgent: 'Urgent', not_urgent: 'Not urgent' },
  replyMethod: { phone: 'Phone', visit: 'Visit', letter: 'Letter', online: 'Online', none: 'No reply' },
  status: {
    open: 'In handling', in_handling: 'In handling', completed: 'Completed, awaiting callback', closed: 'Closed',
    invalid: 'Invalid', pending: 'Pending', done: 'Done', cancelled: 'Cancelled', reopened: 'Reopened',
    assigned: 'Assigned', acknowledged: 'Acknowledged', arrived: 'On site', signed_back: 'Signed back', transferred: 'Transferred',
  },
  register: {
    title: 'Register a request', kind: 'Kind', channel: 'Channel', category: 'Category', repairClass: 'Repair class',
    building: 'Building', unit: 'Unit', unitHint: 'building-entrance-room, e.g. 1-2-301', location: 'Location',
    description: 'Description', severity: 'Severity', urgency: 'Urgency', replyMethod: 'Reply method',
    replyAgreedBy: 'Agreed reply time', appointment: 'Appointment', ownerSigned: 'Owner signed in person',
    submit: 'Register', saved: 'Registered', formNumber: 'Form number', another: 'Register another', open: 'Open ticket',
    zone: 'Times are the estate\'s local time ({tz})', descriptionRequired: 'Enter a description',
  },
  worklist: {
    title: 'Department worklist', department: 'Department', empty: 'Nothing waiting for this department', refresh: 'Refresh',
    acknowledge: 'Acknowledge', arrive: 'Arrived', signBack: 'Sign back', reschedule: 'Reschedule', detail: 'Detail',
    accepted: 'Accepted', nextDue: 'Next deadline', overdue: 'Overdue', round: 'Round {n}',
    opinion: 'Handling opinion', result: 'Result', verifiedBy: 'Verified by (department head)', newAppointment: 'New appointment',
    note: 'Note left and reason', confirm: 'Confirm', cancel: 'Cancel', done: 'Saved', signBackTitle: 'Sign back the form',
    rescheduleTitle: 'Owner not at home: reschedule', noDepartment: 'Your account has no department',
  },
  callbacks: {
    title: 'Callbacks', empty: 'No callbacks due', due: 'Due', method: 'Method', record: 'Record',
    handledInTime: 'Handled in time?', resultSatisfied: 'Satisfied with the result?', attitudeSatisfied: 'Satisfied with the attitude?',
    suggestions: 'Owner\'s suggestions', yes: 'Yes', no: 'No', satisfied: 'Satisfied', unsatisfied: 'Not satisfied',
    closed: 'The owner is satisfied; the ticket is closed', reopened: 'Not satisfied: sent back to {departments} (round {round})',
    recorded: 'Recorded', overdue: '{minutes} min overdue', recordTitle: 'Record the callback', filter: 'Show',
    pending: 'Pending', overdueOnly: 'Overdue', doneList: 'Done',
  },
  ticket: {
    title: 'Ticket detail', request: 'Request', form: 'Countersign form', deadlines: 'Deadlines', escalations: 'Escalations',
    callbacks: 'Callbacks', archived: 'Archived form', openArchive: 'Open the archived form', notArchived: 'Not archived yet',
    firstContact: 'First contact', receivedAt: 'Received', status: 'Status', round: 'Round', department: 'Department',
    line: 'Department lines', clock: 'Clock', dueAt: 'Due', metAt: 'Met', outcome: 'Outcome', rung: 'Rung',
    escalatedAt: 'Escalated', reason: 'Reason', signature: 'Owner signature', notFound: 'No such ticket',
    lookup: 'Find by form number or ticket id', search: 'Find', closedAt: 'Closed', completedAt: 'Completed',
    acknowledgedAt: 'Acknowledged', arrivedAt: 'Arrived', signedBackAt: 'Signed back', opinion: 'Opinion', result: 'Result',
    verifiedBy: 'Verified by', doneAt: 'Called back', answers: 'Answers', noCallbacks: 'No callbacks yet',
  },
  clock: { acknowledge: 'Acknowledge', arrival: 'Arrival', repair_slip_return: 'Repair slip back', reply: 'Reply to owner', tracking: 'Tracking to callback' },
  outcome: { met: 'Met', superseded: 'Superseded', cancelled: 'Cancelled', breached: 'Breached' },
  signature: { signed: 'Signed', later: 'Owed (later)', not_required: 'Not required' },
  purpose: { satisfaction: 'Satisfaction', repair_check: 'Repair check', midway_check: 'Mid-way check', thanks: 'Thanks' },
  mine: { title: 'My first-contact requests', empty: 'You own no requests', nextDue: 'Next deadline', signatureOwed: 'Signature owed' },
  common: { loading: 'Loading…', none: 'None', minutesLeft: '{n} min left', minutesLate: '{n} min late' },
}

const merged = (base, more) => Object.fromEntries([...new Set([...Object.keys(base), ...Object.keys(more)])]
  .map((k) => [k, { ...base[k], ...more[k] }]))
export const messages = withDeskMessages({ zh: merged(zh, frontline.zh), en: merged(en, frontline.en) })

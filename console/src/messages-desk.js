// Texts of the back-office screens (档案 Archive, 报表 Reports, 设置 Settings), kept apart
// from messages.js so the front-line screens' texts and these change independently.
const zh = {
  menu: { archive: '档案', reports: '报表', settings: '设置', dashboard: '品质看板' },
  common: {
    save: '保存', saved: '已保存', cancel: '取消', confirm: '确定', refresh: '刷新', actions: '操作',
    add: '添加', remove: '删除', yes: '是', no: '否', none: '无', live: '实时更新', download: '下载',
    search: '搜索', month: '月份', quarter: '季度', all: '全部',
  },
  archive: {
    title: '档案', records: '档案检索', loans: '借阅登记', destruction: '销毁申请', verify: '链校验',
    search: '单号、标题或档号', month: '结案月份', recordNumber: '档号', formNumber: '会签单号', titleCol: '标题',
    kind: '类别', closedMonth: '结案月', retention: '保管期限', archivedAt: '归档时间', expires: '保管到期',
    destroyed: '已销毁', important: '重要', borrow: '借阅', openForm: '查看原件', borrowTitle: '借阅登记',
    purpose: '借阅目的', mode: '方式', approver: '批准人工号', approvalReference: '批准文号',
    external: '外单位借阅人', externalName: '姓名', organisation: '单位', modes: { consult: '查阅', loan: '借出', copy: '复印', export: '导出' },
    borrower: '借阅人', registeredAt: '登记时间', dueBack: '应还时间', returnedAt: '归还时间', giveBack: '归还',
    returned: '已归还', overdue: '逾期未还', open: '借阅中', eligible: '已过保管期、可申请销毁的档案（勾选后提交申请）',
    destroyHint: '批准后所列档案立即销毁：保密资料粉碎、电子内容删除，哈希保留，链仍可校验；销毁登记写明本申请和批准人。',
    requestReason: '销毁理由（如：保管期满，无查考价值）', requestDestruction: '提交销毁申请（{n} 份）', requested: '销毁申请已提交，待总经理审批',
    requests: '销毁申请', reason: '理由', requestedBy: '申请人', state: '状态', requestNumber: '销毁申请号',
    states: { requested: '待审批', approved: '已批准销毁', refused: '不予销毁' },
    classes: { ordinary: '一般档案', important_event: '重要事件资料', company_handled: '公司处理件' },
    approve: '批准', refuse: '不予批准', approveTitle: '批准销毁（总经理）', refuseTitle: '不予销毁', approveDestroy: '批准并销毁',
    refusalReason: '不予销毁的理由', refusedDone: '已不予批准',
    log: '销毁登记', approvedBy: '批准人', destroyedAt: '销毁时间', verifyNow: '立即校验',
    chainOk: '档案链完整：{n} 份记录逐一校验通过', chainBroken: '档案链在 {record} 处断裂：{reason}',
    noRecords: '暂无档案', noLoans: '暂无借阅', noneEligible: '暂无已过保管期的档案', destroyedDone: '已销毁',
    earlier: '更早的档案', eligibleOfMonth: '{month} 结案的档案中（在“档案检索”中换月份）', eligibleShown: '“档案检索”已列出的档案中',
  },
  reports: {
    title: '报表', estateMonthly: '小区月报', company: '公司汇总', quarterly: '季度报告', dashboard: '打开实时品质看板',
    figures: '本月数字', xlsx: '下载 Excel', print: '打印版', signOff: '部门负责人签署', department: '部门',
    problems: '存在问题', correctiveActions: '纠正措施', sign: '签署', signedBy: '签署人', signedOn: '签署日期',
    signed: '已签署', notSigned: '未签署', byDepartment: '各部门', rank: '名次', estate: '管理处', score: '得分',
    noCompany: '公司汇总需公司级角色（品质经理、总经理等）', due: '报送截止',
  },
  metric: {
    opened: '受理', closed: '关闭', completed: '完成', off_hours_opened: '非工作时间受理', clocks_met: '按时',
    clocks_breached: '超时', escalations: '升级', callbacks_required: '应回访', callbacks_done: '已回访',
    valid_complaints: '有效投诉', invalid_complaints: '无效投诉', nonconformities: '不合格项', reopened: '重新派单',
    on_time_rate: '及时率', callback_rate: '回访率', satisfaction_rate: '满意度', callback_on_time_rate: '回访及时率',
    first_round_close_rate: '一次关闭率', open_carried_in: '上月结转', open_carried_out: '结转下月',
  },
  settings: {
    title: '设置', estate: '小区', departments: '部门', staff: '员工', accounts: '账号', routing: '派单规则',
    policy: '政策参数', calendar: '公司日历', name: '名称', code: '代码', director: '物业中心主任（工号）',
    buildings: '楼栋（逗号分隔）', head: '负责人（工号）', staffId: '工号', roles: '角色', department: '部门',
    phone: '手机号', saveEstate: '保存小区定义', adminOnly: '小区定义仅公司管理员可修改',
    hasPassword: '已设密码', lockedUntil: '锁定至', lastLogin: '上次登录', setPassword: '设置密码', newPassword: '新密码',
    removeAccount: '停用账号', removeConfirm: '停用 {id} 的账号？其已打开的页面和实时列表将结束。',
    rule: '规则', category: '事项分类（通配，| 分隔）', location: '地点', priority: '优先级', saveRules: '保存派单规则',
    section: '分类', field: '参数', value: '本小区取值', effective: '生效值', default: 'RULES.md 默认值',
    overridden: '已改', savePolicy: '保存政策', reset: '恢复默认', policyHint: '留空即沿用公司/默认值；保存时由服务端逐项校验。',
    daysOff: '额外休息日', workdays: '调休上班日', loadedYears: '已载入全年安排的年份（逗号分隔）', saveCalendar: '保存日历',
    calendarHint: '国家法定节假日已内置；此处填写公司自己的休息日和调休上班日。',
    newEstate: '新建小区', codeHint: '小写字母、数字、- 或 _，如 lakeside',
    copyFrom: '沿用 {code} 的部门、楼栋和派单规则（负责人和员工需另行设置）',
  },
}

const en = {
  menu: { archive: 'Archive', reports: 'Reports', settings: 'Settings', dashboard: 'Quality dashboard' },
  common: {
    save: 'Save', saved: 'Saved', cancel: 'Cancel', confirm: 'Confirm', refresh: 'Refresh', actions: 'Actions',
    add: 'Add', remove: 'Remove', yes: 'Yes', no: 'No', none: 'None', live: 'Live', download: 'Download',
    search: 'Search', month: 'Month', quarter: 'Quarter', all: 'All',
  },
  archive: {
    title: 'Archive', records: 'Records', loans: 'Lending register', destruction: 'Destruction requests', verify: 'Chain check',
    search: 'Form number, title or record number', month: 'Closed in', recordNumber: 'Record', formNumber: 'Form',
    titleCol: 'Title', kind: 'Kind', closedMonth: 'Closed', retention: 'Retention', archivedAt: 'Archived',
    expires: 'Retained until', destroyed: 'Destroyed', important: 'Important', borrow: 'Borrow', openForm: 'Open form',
    borrowTitle: 'Register a loan', purpose: 'Purpose', mode: 'Mode', approver: 'Approver (staff id)',
    approvalReference: 'Approval reference', external: 'Outside borrower', externalName: 'Name', organisation: 'Organisation',
    modes: { consult: 'Consult', loan: 'Loan', copy: 'Copy', export: 'Export' },
    borrower: 'Borrower', registeredAt: 'Registered', dueBack: 'Due back', returnedAt: 'Returned', giveBack: 'Return',
    returned: 'Returned', overdue: 'Overdue', open: 'Out', eligible: 'Records past their retention (tick them to request destruction)',
    destroyHint: 'Approving destroys the listed records at once: confidential paper shredded, electronic content erased, the hashes kept so the chain still verifies; the destruction log names this request and you as approver.',
    requestReason: 'Reason (e.g. retention expired, no further reference value)', requestDestruction: 'Request destruction ({n})',
    requested: 'Destruction requested; waiting for the general manager', requests: 'Destruction requests', reason: 'Reason',
    requestedBy: 'Requested by', state: 'State', requestNumber: 'Destruction request',
    states: { requested: 'Awaiting approval', approved: 'Approved, destroyed', refused: 'Refused' },
    classes: { ordinary: 'Ordinary', important_event: 'Important event', company_handled: 'Company-handled' },
    approve: 'Approve', refuse: 'Refuse', approveTitle: 'Approve destruction (general manager)', refuseTitle: 'Refuse destruction',
    approveDestroy: 'Approve and destroy', refusalReason: 'Why the records are kept', refusedDone: 'Refused',
    log: 'Destruction log', approvedBy: 'Approved by', destroyedAt: 'Destroyed', verifyNow: 'Verify now',
    chainOk: 'The chain is intact: {n} records verified', chainBroken: 'The chain breaks at {record}: {reason}',
    noRecords: 'No records', noLoans: 'No loans', noneEligible: 'No record is past its retention', destroyedDone: 'Destroyed',
    earlier: 'Earlier records', eligibleOfMonth: 'Among the records closed in {month} (pick another month under Records)', eligibleShown: 'Among the records listed under Records',
  },
  reports: {
    title: 'Reports', estateMonthly: 'Estate monthly report', company: 'Company consolidation', quarterly: 'Quarterly report',
    dashboard: 'Open the live quality dashboard', figures: 'This month', xlsx: 'Download Excel', print: 'Printable',
    signOff: 'Department head sign-off', department: 'Department', problems: 'Problems found',
    correctiveActions: 'Corrective actions', sign: 'Sign', signedBy: 'Signed by', signedOn: 'Signed on',
    signed: 'Signed', notSigned: 'Not signed', byDepartment: 'By department', rank: 'Rank', estate: 'Estate', score: 'Score',
    noCompany: 'The consolidation needs a company-wide role (quality manager, general manager …)', due: 'Due on',
  },
  metric: {
    opened: 'Received', closed: 'Closed', completed: 'Completed', off_hours_opened: 'Received off hours', clocks_met: 'On time',
    clocks_breached: 'Breached', escalations: 'Escalations', callbacks_required: 'Callbacks due', callbacks_done: 'Callbacks done',
    valid_complaints: 'Valid complaints', invalid_complaints: 'Invalid complaints', nonconformities: 'Nonconformities',
    reopened: 'Sent round again', on_time_rate: 'On-time rate', callback_rate: 'Callback rate', satisfaction_rate: 'Satisfaction',
    callback_on_time_rate: 'Callbacks on time', first_round_close_rate: 'Closed first round',
    open_carried_in: 'Carried in', open_carried_out: 'Carried out',
  },
  settings: {
    title: 'Settings', estate: 'Estate', departments: 'Departments', staff: 'Staff', accounts: 'Accounts',
    routing: 'Routing rules', policy: 'Policies', calendar: 'Company calendar', name: 'Name', code: 'Code',
    director: 'Estate director (staff id)', buildings: 'Buildings (comma separated)', head: 'Head (staff id)',
    staffId: 'Staff id', roles: 'Roles', department: 'Department', phone: 'Phone', saveEstate: 'Save the estate',
    adminOnly: 'Only the company admin changes the estate definition', hasPassword: 'Password set',
    lockedUntil: 'Locked until', lastLogin: 'Last sign-in', setPassword: 'Set password', newPassword: 'New password',
    removeAccount: 'Remove account', removeConfirm: "Remove {id}'s account? Their open pages and live lists end.",
    rule: 'Rule', category: 'Category (patterns, | separated)', location: 'Location', priority: 'Priority',
    saveRules: 'Save routing rules', section: 'Section', field: 'Setting', value: "This estate's value",
    effective: 'In force', default: 'RULES.md default', overridden: 'Changed', savePolicy: 'Save policies',
    reset: 'Back to default', policyHint: 'Empty keeps the company value or the default; the server checks every value on saving.',
    daysOff: 'Extra days off', workdays: 'Make-up workdays', loadedYears: 'Years fully loaded (comma separated)',
    saveCalendar: 'Save the calendar', calendarHint: "Public holidays are built in; enter the company's own days off and make-up workdays here.",
    newEstate: 'New estate', codeHint: 'lower-case letters, digits, - or _, e.g. lakeside',
    copyFrom: "Start from {code}'s departments, buildings and routing rules (heads and staff are set afterwards)",
  },
}

function merge(into, from) {
  for (const [key, value] of Object.entries(from)) {
    if (value && typeof value === 'object' && !Array.isArray(value) && into[key] && typeof into[key] === 'object') merge(into[key], value)
    else into[key] = value
  }
  return into
}

/** The console's messages with these screens' texts added. */
export function withDeskMessages(messages) {
  merge(messages.zh, zh)
  merge(messages.en, en)
  return messages
}

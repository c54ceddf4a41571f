// Texts of the front-line screens added by issue 16 (投诉处理 complaints, 值班交接 night
// duty, the Register preview, My first-contact countdowns), kept apart from messages.js;
// merged into it key by key.
const zh = {
  menu: { complaints: '投诉处理', duty: '值班交接' },
  mine: {
    days: '{d} 天 {h} 小时', hours: '{h} 小时 {m} 分钟', minutes: '{m} 分钟', left: '剩 {x}', late: '已超 {x}',
    nextReminder: '下次补签提醒', remindersSent: '已提醒 {n} 次',
    updatesDue: '{start} – {end} 应向业主通报进展 {required} 次，已通报 {n} 次',
  },
  register: {
    preview: '若现在登记：派往 {departments}，时限如下', previewNonconformity: '业主经济损失超过限额：将开具不合格报告，待管理者代表审批',
  },
  validity: {
    unjudged: '待判定', valid: '有效', awaiting_confirmation: '无效待经理确认', confirmed: '已确认无效', rejected: '经理驳回，有效',
  },
  status: { awaiting_nc: '待审批不合格报告' },
  formStatus: { in_handling: '处理中', awaiting_nc: '待审批不合格报告', completed: '已完成待回访', closed: '已关闭', invalid: '无效' },
  ncState: { opened: '已开具', approved: '已审批', corrective_action: '纠正中', closed: '已关闭' },
  role: {
    management_representative: '管理者代表', general_manager: '总经理', estate_director: '物业中心主任',
    customer_service_supervisor: '客服主管', quality_manager: '品质经理', department_head: '部门主管',
  },
  duty: {
    title: '值班交接', done: '已保存', handOver: '交班', offHours: '非工作时间受理', unclaimed: '{n} 项待接手',
    offHoursHint: '值班时受理的事项，由下一班逐项接手；首问责任人不变。', noOffHours: '暂无非工作时间受理的事项',
    overdue: '交接超期', taken: '已接手', registered: '受理', dueBy: '应接手时间', takenBy: '接手', takeOver: '接手',
    shiftItems: '交接班事项', showClaimed: '含已签收', claimed: '已签收', claimBy: '应签收时间', claimedBy: '签收',
    shiftItemsHint: '接班人须在接班时逐项签字确认；逾期未签收的事项上报客服主管。', noItems: '暂无待签收的交接事项',
    escalated: '已上报 {to}', claim: '签收', shift: '班次', notes: '交接事项（每行一项）',
    notesHint: '领导交办、钥匙、设备等', openAdded: '本班受理且未处理完的工单会自动列入交接。',
  },
  complaints: {
    title: '投诉处理', empty: '暂无投诉', handle: '处理', done: '已保存', filterOpen: '未结', filterValidity: '待判定/确认',
    filterAll: '全部', loss: '业主经济损失', noticeOverdue: '告知超期', formStatus: '会签单状态',
    validity: '有效性判定', valid: '有效投诉', invalid: '无效投诉', reason: '判定理由', judge: '提交判定',
    invalidNeedsManager: '判定无效须由经理本人登录确认；业主须在规定工作日内得到答复。',
    state: '状态', judgedBy: '判定人', confirmedBy: '确认人', notifyBy: '告知业主期限', provisional: '暂定，待日历确认',
    notifiedAt: '已告知业主', late: '逾期告知', notYourOwn: '待经理本人登录确认（判定人不能确认自己的判定）。',
    managerDecides: '经理确认：确认无效则处理结束；驳回须写明理由，投诉按有效处理。',
    managerNote: '经理意见（驳回时必填）', confirmInvalid: '确认无效', rejectInvalid: '驳回（按有效处理）',
    notice: '告知业主', noticeText: '告知业主的内容（无效理由）', recordNotice: '记录告知',
    nonconformity: '不合格报告与纠正预防', ncRule: '业主经济损失超过 {n} 元须开具不合格报告，由{role}审批。',
    ncContent: '不合格内容', overLimit: '超过 {n} 元', ncOpen: '开具不合格报告', openedBy: '开具人', approvedBy: '审批',
    awaitingApproval: '待审批', approve: '审批通过', approveHint: '仅{role}本人可审批', action: '纠正措施',
    responsible: '责任人', startAction: '开始纠正', result: '纠正结果', closeNc: '关闭不合格报告',
    capa: '纠正/预防措施报告', capaHint: '评审会议后的纠正/预防措施报告', saveCapa: '提交报告',
  },
}

const en = {
  menu: { complaints: 'Complaints', duty: 'Night duty' },
  mine: {
    days: '{d} d {h} h', hours: '{h} h {m} min', minutes: '{m} min', left: '{x} left', late: '{x} late',
    nextReminder: 'Next signature reminder', remindersSent: '{n} reminders sent',
    updatesDue: 'Owner updates {start} – {end}: {n} of {required} given',
  },
  register: {
    preview: 'If registered now: goes to {departments}, with these deadlines',
    previewNonconformity: "The owner's loss is above the limit: a nonconformity record awaits the management representative",
  },
  validity: {
    unjudged: 'Not judged', valid: 'Valid', awaiting_confirmation: 'Invalid, awaiting manager', confirmed: 'Confirmed invalid',
    rejected: 'Rejected by manager: valid',
  },
  status: { awaiting_nc: 'Awaiting nonconformity approval' },
  formStatus: { in_handling: 'In handling', awaiting_nc: 'Awaiting nonconformity approval', completed: 'Completed, callback due',
    closed: 'Closed', invalid: 'Invalid' },
  ncState: { opened: 'Opened', approved: 'Approved', corrective_action: 'Corrective action', closed: 'Closed' },
  role: {
    management_representative: 'management representative', general_manager: 'general manager',
    estate_director: 'estate director', customer_service_supervisor: 'customer-service supervisor',
    quality_manager: 'quality manager', department_head: 'department head',
  },
  duty: {
    title: 'Night duty and handover', done: 'Saved', handOver: 'Hand over my shift', offHours: 'Registered off hours',
    unclaimed: '{n} to take over', offHoursHint: 'Requests registered on duty; the next shift takes each over. The first-contact owner stays.',
    noOffHours: 'Nothing registered off hours', overdue: 'Handover overdue', taken: 'Taken over', registered: 'Registered by',
    dueBy: 'Take over by', takenBy: 'Taken over by', takeOver: 'Take over', shiftItems: 'Shift handover items',
    showClaimed: 'Include claimed', claimed: 'Claimed', claimBy: 'Claim by', claimedBy: 'Claimed by',
    shiftItemsHint: 'The incoming shift claims each item by its start; unclaimed items go to the customer-service supervisor.',
    noItems: 'No handover items to claim', escalated: 'Escalated to {to}', claim: 'Claim', shift: 'Shift',
    notes: 'Items (one a line)', notesHint: "Leaders' instructions, keys, equipment…",
    openAdded: "Requests this shift registered and not yet handled are added by themselves.",
  },
  complaints: {
    title: 'Complaints', empty: 'No complaints', handle: 'Handle', done: 'Saved', filterOpen: 'Open',
    filterValidity: 'To judge / confirm', filterAll: 'All', loss: "Owner's loss", noticeOverdue: 'Notice overdue',
    formStatus: 'Countersign form', validity: 'Validity', valid: 'Valid', invalid: 'Invalid', reason: 'Reason',
    judge: 'Record judgement',
    invalidNeedsManager: 'An invalid judgement needs a manager to confirm it signed in as themselves; the owner must hear the reason within the policy\'s working days.',
    state: 'State', judgedBy: 'Judged by', confirmedBy: 'Decided by', notifyBy: 'Tell the owner by',
    provisional: 'provisional, calendar pending', notifiedAt: 'Owner told', late: 'Late',
    notYourOwn: 'Awaits a manager, signed in as themselves (the judge cannot confirm their own judgement).',
    managerDecides: 'Manager: confirm invalid ends the handling; rejecting needs your reason and treats it as valid.',
    managerNote: "Manager's note (required to reject)", confirmInvalid: 'Confirm invalid', rejectInvalid: 'Reject (valid)',
    notice: 'Tell the owner', noticeText: 'What the owner was told (the reason)', recordNotice: 'Record notice',
    nonconformity: 'Nonconformity and CAPA',
    ncRule: "An owner's loss above {n} CNY needs a nonconformity record, approved by the {role}.",
    ncContent: 'Nonconformity', overLimit: 'above {n} CNY', ncOpen: 'Open nonconformity record', openedBy: 'Opened by',
    approvedBy: 'Approval', awaitingApproval: 'Awaiting approval', approve: 'Approve',
    approveHint: 'Only the {role}, signed in, may approve', action: 'Corrective action', responsible: 'Responsible',
    startAction: 'Start corrective action', result: 'Result', closeNc: 'Close record', capa: 'CAPA report',
    capaHint: 'Corrective/preventive action report after the review meeting', saveCapa: 'Save report',
  },
}

export const frontline = { zh, en }

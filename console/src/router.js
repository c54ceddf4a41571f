import { createRouter, createWebHistory } from 'vue-router'
import { hasRole, session } from './session.js'
import { ownerRoutes } from './owner/routes.js'

// Who sees which screen (the API checks again on every write).
export const SCREENS = [
  { name: 'register', path: 'register', view: () => import('./views/Register.vue'),
    roles: ['customer_service', 'customer_service_supervisor', 'duty_staff', 'estate_director'] },
  { name: 'worklist', path: 'worklist', view: () => import('./views/Worklist.vue'),
    roles: ['department_staff', 'department_head', 'estate_director'] },
  { name: 'callbacks', path: 'callbacks', view: () => import('./views/Callbacks.vue'),
    roles: ['customer_service', 'customer_service_supervisor', 'department_head', 'estate_director'] },
  { name: 'mine', path: 'mine', view: () => import('./views/Mine.vue'),
    roles: ['customer_service', 'customer_service_supervisor', 'duty_staff', 'estate_director', 'department_head'] },
  { name: 'complaints', path: 'complaints', view: () => import('./views/Complaints.vue'),
    roles: ['customer_service', 'customer_service_supervisor', 'estate_director', 'quality_manager', 'department_head',
      'general_manager', 'management_representative'] },
  { name: 'duty', path: 'duty', view: () => import('./views/Duty.vue'),
    roles: ['duty_staff', 'customer_service', 'customer_service_supervisor', 'estate_director'] },
  { name: 'ownerDesk', path: 'owner-desk', view: () => import('./owner/Desk.vue'),
    roles: ['customer_service', 'customer_service_supervisor', 'estate_director'] },
  { name: 'ticket', path: 'tickets/:id?', view: () => import('./views/Ticket.vue'), roles: null },
  { name: 'archive', path: 'archive', view: () => import('./views/Archive.vue'),
    roles: ['customer_service', 'customer_service_supervisor', 'estate_director', 'general_manager',
      'quality_manager', 'management_representative', 'company_general_management'] },
  { name: 'reports', path: 'reports', view: () => import('./views/Reports.vue'),
    roles: ['department_head', 'estate_director', 'quality_manager', 'general_manager',
      'management_representative', 'company_general_management'] },
  { name: 'settings', path: 'settings', view: () => import('./views/Settings.vue'), roles: ['estate_director'] },
]

export const allowed = (screen) => !screen.roles || hasRole(...screen.roles)

export const router = createRouter({
  history: createWebHistory(),
  routes: [
    { path: '/login', name: 'login', component: () => import('./views/Login.vue'), meta: { public: true } },
    // The quality dashboard: a page of its own (no menu bar), signed in like every screen.
    { path: '/dashboard', name: 'dashboard', component: () => import('./views/Dashboard.vue') },
    {
      path: '/',
      component: () => import('./views/Layout.vue'),
      children: [
        { path: '', name: 'home', redirect: () => ({ name: (SCREENS.find((s) => s.roles && allowed(s)) || SCREENS.at(-1)).name }) },
        ...SCREENS.map((s) => ({ path: s.path, name: s.name, component: s.view, meta: { roles: s.roles } })),
      ],
    },
    ...ownerRoutes,
    { path: '/:rest(.*)*', redirect: '/' },
  ],
})

router.beforeEach((to) => {
  if (!to.meta.public && !session.token) return { name: 'login', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
  if (to.name === 'login' && session.token) return { name: 'home' }
  if (to.meta.roles && !hasRole(...to.meta.roles)) return { name: 'home' }
  return true
})

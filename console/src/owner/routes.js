// The owners' pages: their own prefix (/o), their own layout, their own token; the staff
// sign-in never applies here (meta.public).
const child = (path, name, view) => ({ path, name, component: view, meta: { public: true, owner: true } })

export const ownerRoutes = [
  {
    path: '/o',
    component: () => import('./OwnerLayout.vue'),
    meta: { public: true, owner: true },
    children: [
      child('', 'owner-home', () => import('./Home.vue')),
      child('bind/:estate/:unit', 'owner-bind', () => import('./Bind.vue')),
      child('new', 'owner-new', () => import('./Submit.vue')),
      child('r/:id', 'owner-request', () => import('./Follow.vue')),
    ],
  },
]

import { Router } from 'express';
import type { AdminService } from '../admin/admin.service.js';
import { currentUser } from '../auth/auth.middleware.js';

export function adminRoutes(admin: AdminService): Router {
  const router = Router();
  router.use('/admin', async (req, _res, next) => {
    await admin.assertAdmin(currentUser(req));
    next();
  });
  router.get('/admin/jobs', async (_req, res) => {
    res.json(await admin.jobStats());
  });
  router.post('/admin/files/:id/verify', async (req, res) => {
    res.status(202).json({ fileId: await admin.verifyFile(req.params.id), queued: true });
  });
  return router;
}

import express, { Router, type Request } from 'express';
import type { Pool } from 'pg';
import { AppError } from '../errors';
import type { ReferenceCache } from '../ingest/references';
import { checkNewDevice, checkNewUser } from '../ingest/schema';
import { assertJson } from './body-source';

const INT4_MAX = 2_147_483_647;
const USER_COLUMNS = 'id, name, age, created_at';
const DEVICE_COLUMNS = 'id, type, name, created_at';

export interface AdminRoutesOptions {
  readonly pool: Pool;
  readonly references: ReferenceCache;
}

export function userIdParam(req: Request): number {
  const raw = String(req.params.id);
  const id = Number(raw);
  if (!/^\d{1,10}$/.test(raw) || id < 1 || id > INT4_MAX) {
    throw new AppError('validation_failed', 'a user id is an integer from 1 to 2147483647', [
      { path: '/params/id', message: 'must be an integer from 1 to 2147483647' },
    ]);
  }
  return id;
}

/** Registration and lookup of users and devices. */
export function adminRoutes({ pool, references }: AdminRoutesOptions): Router {
  const router = Router();
  const json = express.json({ limit: '16kb', strict: false });
  const requireJson: express.RequestHandler = (req, _res, next) => {
    assertJson(req);
    next();
  };

  router.post('/v1/users', requireJson, json, async (req, res) => {
    const check = checkNewUser(req.body);
    if (!check.ok) throw new AppError('validation_failed', 'the user does not match the schema', check.details);
    const { rows } = await pool.query(`INSERT INTO users (name, age) VALUES ($1, $2) RETURNING ${USER_COLUMNS}`, [
      check.value.name,
      check.value.age ?? null,
    ]);
    const user = rows[0] as { id: number };
    references.rememberUser(user.id);
    res.status(201).json(user);
  });

  router.get('/v1/users/:id', async (req, res) => {
    const { rows } = await pool.query(`SELECT ${USER_COLUMNS} FROM users WHERE id = $1`, [userIdParam(req)]);
    if (rows.length === 0) throw new AppError('not_found', `no user with id ${req.params.id}`);
    res.json(rows[0]);
  });

  router.post('/v1/devices', requireJson, json, async (req, res) => {
    const check = checkNewDevice(req.body);
    if (!check.ok) throw new AppError('validation_failed', 'the device does not match the schema', check.details);
    const { id, type, name } = check.value;
    const { rows } = await pool.query(
      `INSERT INTO devices (id, type, name) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING ${DEVICE_COLUMNS}`,
      [id, type ?? null, name ?? null],
    );
    if (rows.length === 0) {
      throw new AppError('already_exists', `a device with id ${JSON.stringify(id)} already exists`, [
        { path: '/id', message: 'already exists' },
      ]);
    }
    references.rememberDevice(id);
    res.status(201).json(rows[0]);
  });

  router.get('/v1/devices/:id', async (req, res) => {
    const id = String(req.params.id);
    if (id.length > 255 || id.includes('\u0000') || !id.isWellFormed())
      throw new AppError('not_found', 'no such device');
    const { rows } = await pool.query(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE id = $1`, [id]);
    if (rows.length === 0) throw new AppError('not_found', `no device with id ${JSON.stringify(id)}`);
    res.json(rows[0]);
  });

  return router;
}

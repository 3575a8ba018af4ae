import type { Request } from 'express';
import type { Pool } from 'pg';
import { AppError } from '../contract/errors';
import { ajv } from '../contract/json-schema';
import { INT4_MAX, deviceIdSchema, userIdSchema } from '../contract/schemas';
import { findDevice, findUser, insertDevice, insertUser } from '../db/users-devices';
import type { ReferenceCache } from '../ingest/references';
import { checkNewDevice, checkNewUser } from '../ingest/schema';
import type { RouteHandlers } from './routes';

export interface UsersDevicesRoutesOptions {
  readonly pool: Pool;
  readonly references: ReferenceCache;
}

const USER_ID_RANGE = `an integer from ${userIdSchema.minimum} to ${INT4_MAX}`;
const isDeviceId = ajv.compile<string>(deviceIdSchema);

export function userIdParam(req: Request): number {
  const raw = String(req.params.id);
  const id = Number(raw);
  if (!/^\d{1,10}$/.test(raw) || id < userIdSchema.minimum || id > INT4_MAX) {
    throw new AppError('validation_failed', `a user id is ${USER_ID_RANGE}`, {
      details: [{ path: '/params/id', message: `must be ${USER_ID_RANGE}` }],
    });
  }
  return id;
}

/** Registration and lookup of users and devices. */
export function usersDevicesRoutes({ pool, references }: UsersDevicesRoutesOptions) {
  return {
    createUser: async (req, res) => {
      const check = checkNewUser(req.body);
      if (!check.ok) {
        throw new AppError('validation_failed', 'the user does not match the schema', { details: check.details });
      }
      const user = await insertUser(pool, check.value);
      references.rememberUser(user.id);
      res.status(201).json(user);
    },
    getUser: async (req, res) => {
      const user = await findUser(pool, userIdParam(req));
      if (user === undefined) throw new AppError('not_found', `no user with id ${req.params.id}`);
      res.json(user);
    },
    createDevice: async (req, res) => {
      const check = checkNewDevice(req.body);
      if (!check.ok) {
        throw new AppError('validation_failed', 'the device does not match the schema', { details: check.details });
      }
      const device = await insertDevice(pool, check.value);
      if (device === undefined) {
        throw new AppError('already_exists', `a device with id ${JSON.stringify(check.value.id)} already exists`, {
          details: [{ path: '/id', message: 'already exists' }],
        });
      }
      references.rememberDevice(device.id);
      res.status(201).json(device);
    },
    getDevice: async (req, res) => {
      const id = String(req.params.id);
      if (!isDeviceId(id)) throw new AppError('not_found', 'no such device');
      const device = await findDevice(pool, id);
      if (device === undefined) throw new AppError('not_found', `no device with id ${JSON.stringify(id)}`);
      res.json(device);
    },
  } satisfies RouteHandlers;
}

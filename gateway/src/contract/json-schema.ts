import Ajv2020 from 'ajv/dist/2020';

/**
 * The TypeScript type of a value that an `as const` JSON Schema accepts, for the keywords the
 * contract uses (type, properties, required, items, enum, const): the schema is written once and
 * its type follows it.
 */
export type FromSchema<S> = S extends { readonly const: infer C }
  ? C
  : S extends { readonly enum: readonly (infer E)[] }
    ? E
    : S extends { readonly type: infer T }
      ? FromType<T extends readonly (infer U)[] ? U : T, S>
      : unknown;

type Primitives = { string: string; integer: number; number: number; boolean: boolean; null: null };
type FromType<T, S> = T extends keyof Primitives
  ? Primitives[T]
  : T extends 'array'
    ? FromSchema<S extends { readonly items: infer I } ? I : unknown>[]
    : S extends { readonly properties: infer P }
      ? Flat<
          { -readonly [K in keyof P as K extends Required<S> ? K : never]: FromSchema<P[K]> } & {
            -readonly [K in keyof P as K extends Required<S> ? never : K]?: FromSchema<P[K]>;
          }
        >
      : Record<string, unknown>;
type Required<S> = S extends { readonly required: readonly (infer R)[] } ? R : never;
type Flat<T> = { [K in keyof T]: T[K] };

// 0001-01-01T00:00:00Z: PostgreSQL has no year 0, and older instants are surely client bugs.
export const EARLIEST_EPOCH_MS = -62_135_596_800_000;
/** An RFC 3339 timestamp with an offset or Z; ingest/time.ts checks that it is a real calendar instant. */
export const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

/**
 * The one validator of the contract. The `rfc3339-instant` format checks the shape only: the calendar
 * check comes after, with a message of its own (ingest/time.ts, http/read-params.ts).
 */
export const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
ajv.addFormat('rfc3339-instant', { type: 'string', validate: (text: string) => RFC3339.test(text) });
// The formats of answers (PostgreSQL's timestamps and uuids), for the tests that check answers.
ajv.addFormat('date-time', RFC3339);
ajv.addFormat('uuid', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
// PostgreSQL text cannot hold NUL, and an unpaired UTF-16 surrogate cannot be encoded as UTF-8:
// both would fail a whole COPY batch or silently change the value, so they are refused.
ajv.addKeyword({
  keyword: 'x-storable-text',
  type: 'string',
  schemaType: 'boolean',
  errors: false,
  validate: (_enabled: boolean, data: string) => !data.includes('\u0000') && data.isWellFormed(),
});

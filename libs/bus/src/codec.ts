import type { MessageFns } from '@aijob/contracts';

/** Protobuf bytes of `msg`. */
export function encode<T>(fns: MessageFns<T>, msg: T): Uint8Array {
  return fns.encode(msg).finish();
}

/** Decodes protobuf bytes; throws on malformed input. */
export function decode<T>(fns: MessageFns<T>, data: Uint8Array): T {
  return fns.decode(data);
}

import { AuthServiceService } from '@aijob/contracts';
import { InvalidArgumentError, UnauthenticatedError, type Implementation } from '@aijob/platform';
import type { Authenticator } from './authenticator.js';
import type { SigningKeys } from './signing-keys.js';

/** gRPC handlers of aijob.v1.AuthService: proto in, domain calls, proto out. */
export function authServiceHandlers(deps: {
  authenticator: Authenticator;
  keys: SigningKeys;
  tokenTtlSeconds: number;
}): Implementation<typeof AuthServiceService> {
  return {
    async issueToken(req) {
      if (!req.apiKey) throw InvalidArgumentError.field('api_key', 'required');
      const principal = await deps.authenticator.authenticateApiKey(req.apiKey);
      const { token, expiresAt } = await deps.keys.sign(
        { sub: principal.subject, ws: principal.workspaceId, scopes: principal.scopes }, deps.tokenTtlSeconds);
      return { token, expiresAt };
    },
    async authenticate(req) {
      if (!req.token) throw new UnauthenticatedError('token required');
      return { principal: await deps.authenticator.authenticate(req.token) };
    },
  };
}

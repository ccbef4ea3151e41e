import { errorFactory } from '../../../common/errors/catalog.js';

/** Errors of this package name the SPIFFE-ID rule that was broken. */
export const spiffeIdError = errorFactory('spiffeid');

export const messages = {
  empty: 'SPIFFE ID cannot be empty',
  wrongScheme: 'scheme must be "spiffe" in lowercase, followed by "://"',
  missingTrustDomain: 'trust domain is missing',
  badTrustDomainChar: 'trust domain may only hold lowercase letters, digits, dots, dashes and underscores',
  badPathChar: 'path segments may only hold letters, digits, dots, dashes and underscores',
  dotSegment: 'path cannot hold dot segments ("." or "..")',
  emptySegment: 'path cannot hold empty segments',
  trailingSlash: 'path cannot end with a slash',
  noLeadingSlash: 'path must start with a slash',
} as const;

export { parseX509Svid, parseX509SvidRaw, newX509Svid, type X509Svid } from './parse.js';
export { verifyX509Svid, parseAndVerifyX509Svid, pathLimitOf, PathBudgetError, PATH_LIMIT_NAMES, DEFAULT_PATH_LIMITS, type PathLimits, type PathLimitName, type VerifyOptions, type VerifiedX509Svid } from './verify.js';
export { idFromCertificate } from './leaf.js';

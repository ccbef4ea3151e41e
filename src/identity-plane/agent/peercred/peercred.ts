// SO_PEERCRED lives in common/ (the server's admin socket reads it too); the agent's names stay.
export { readPeerCredentials, socketFd, type PeerCredentials } from '../../../common/peercred.js';

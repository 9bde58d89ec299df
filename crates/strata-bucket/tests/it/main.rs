//! strata-bucket against a real S3-compatible server on loopback (scripts/s3.sh, started
//! by scripts/test): what publish and the agent rely on, checked at the server.

mod s3;

//! strata-core's integration tests.

mod corpus;

//! Policy engine for Portcullis (doc to come).
#![deny(missing_docs)]

mod error;
mod facts;
mod k8s;
mod model;
mod policy;
mod request;
mod sql;

pub use error::PolicyError;
pub use facts::{
    ColumnAccess, ColumnUse, CommandFacts, K8sFacts, K8sRisk, K8sVerb, Risk, StatementFacts,
    StatementKind,
};
pub use k8s::analyze_k8s;
pub use policy::{Decision, Effect, FieldRule, MaskDirectives, Policy, ReviewMode};
pub use request::{Command, K8sRequest, Principal, PrincipalKind, Request, Resource, ResourceKind};
pub use sql::{
    DEFAULT_DANGEROUS_FUNCTIONS, DEFAULT_UNSAFE_PARAMETERS, SqlOptions, analyze, analyze_with,
};

//! Why a Docker Flow Proxy request is refused, naming its parameters.

use std::fmt;

use super::params::{MAX_PARAMS, REJECTED, indexed};

/// Why a request cannot be translated. [`DfpError::status_code`] gives the
/// HTTP status to answer with; [`DfpError::params`] the parameters it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DfpError {
    /// More than [`MAX_PARAMS`] query parameters.
    #[error("too many parameters: {count}; at most {MAX_PARAMS} are accepted")]
    TooManyParams {
        /// How many were sent.
        count: usize,
    },
    /// Parameters capstan does not support, all of them, in request order.
    #[error("{}", unsupported_message(.params))]
    Unsupported {
        /// Their names (cut short and escaped when long or unprintable).
        params: Vec<String>,
    },
    /// No `serviceName`.
    #[error("`serviceName` is required")]
    MissingServiceName,
    /// A destination without a port.
    #[error("`{param}` is required: the port the service listens on")]
    MissingPort {
        /// `port`, or `port.<index>` for an indexed destination.
        param: String,
    },
    /// A tcp or sni destination without the port the proxy listens on.
    #[error("`{param}` is required with reqMode=tcp or sni: the port the proxy listens on")]
    MissingSrcPort {
        /// `srcPort`, or `srcPort.<index>`.
        param: String,
    },
    /// An http destination with neither paths nor domains: DFSL reads its
    /// status (409) as "nothing to route" and stops retrying.
    #[error(
        "nothing to route: http destination {index} has neither `{}` nor `{}`",
        indexed("servicePath", *.index),
        indexed("serviceDomain", *.index)
    )]
    NothingToRoute {
        /// The destination's index (0 for the unindexed one).
        index: usize,
    },
    /// Values that are malformed, unsupported, unsafe or rejected by
    /// capstan's validation: every problem found.
    #[error("{}", invalid_message(.problems))]
    Invalid {
        /// One entry per problem, each naming its parameter.
        problems: Vec<ParamProblem>,
    },
}

/// One problem with one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamProblem {
    /// The parameter as sent (`servicePath.2`).
    pub param: String,
    /// What is wrong, for humans.
    pub message: String,
}

impl fmt::Display for ParamProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.param, self.message)
    }
}

impl DfpError {
    /// The HTTP status DFP answers with: 409 for nothing to route, else 400.
    pub fn status_code(&self) -> u16 {
        match self {
            DfpError::NothingToRoute { .. } => 409,
            _ => 400,
        }
    }

    /// The parameters the error is about, as sent.
    pub fn params(&self) -> Vec<String> {
        match self {
            DfpError::TooManyParams { .. } => Vec::new(),
            DfpError::Unsupported { params } => params.clone(),
            DfpError::MissingServiceName => vec!["serviceName".into()],
            DfpError::MissingPort { param } | DfpError::MissingSrcPort { param } => {
                vec![param.clone()]
            }
            DfpError::NothingToRoute { index } => vec![
                indexed("servicePath", *index),
                indexed("serviceDomain", *index),
            ],
            DfpError::Invalid { problems } => problems.iter().map(|p| p.param.clone()).collect(),
        }
    }

    pub(super) fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        DfpError::Invalid {
            problems: vec![ParamProblem {
                param: param.into(),
                message: message.into(),
            }],
        }
    }
}

fn unsupported_message(params: &[String]) -> String {
    let list: Vec<String> = params
        .iter()
        .map(|p| match REJECTED.iter().find(|(name, _)| name == p) {
            Some((_, why)) => format!("`{p}` ({why})"),
            None => format!("`{p}`"),
        })
        .collect();
    let s = if params.len() == 1 { "" } else { "s" };
    format!("unsupported parameter{s}: {}", list.join(", "))
}

fn invalid_message(problems: &[ParamProblem]) -> String {
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    list.join("; ")
}

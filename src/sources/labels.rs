//! Docker Flow Swarm Listener labels as a source of routes: a service
//! labelled `com.df.notify=true` declares its routes with `com.df.*` labels,
//! read as the Docker Flow Proxy `reconfigure` parameters DFSL would send.
//! Pure: a function of a Swarm snapshot. How label routes combine with git's
//! is the business of `desired::overlay`.

use std::collections::BTreeMap;

use crate::dfp::SecretsDir;
use crate::model::{Name, Route, Userlist};
use crate::sources::Warning;
use crate::sources::swarm_snapshot::{ServiceInfo, SwarmState};

/// The label that opts a service in to Docker Flow Swarm Listener.
pub const DF_NOTIFY_LABEL: &str = "com.df.notify";
/// The prefix of every Docker Flow label.
pub const DF_LABEL_PREFIX: &str = "com.df.";
/// `com.df.shortName=true` strips the stack prefix from `serviceName`.
pub const DF_SHORT_NAME_LABEL: &str = "com.df.shortName";
/// The label `docker stack deploy` puts on every service of a stack.
pub const STACK_NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// What the labels of a Swarm's services declare.
#[derive(Debug, Clone, Default)]
pub struct Labelled {
    /// The services whose labels read as routes, in service name order.
    pub services: Vec<ServiceRoutes>,
    /// One for each labelled service whose labels do not.
    pub warnings: Vec<Warning>,
}

/// The routes one labelled service declares.
#[derive(Debug, Clone)]
pub struct ServiceRoutes {
    /// The Swarm service name.
    pub service: String,
    pub routes: Vec<Route>,
    pub userlists: BTreeMap<Name, Userlist>,
}

/// The routes every `com.df.notify=true` service of `swarm` declares; a
/// `com.df.usersSecret` names a file in `secrets`.
pub fn label_routes(swarm: &SwarmState, secrets: &SecretsDir) -> Labelled {
    let mut labelled = Labelled::default();
    for service in swarm.services.values() {
        let Some(params) = dfp_label_params(service) else {
            continue;
        };
        match crate::dfp::parse_reconfigure_in(&params, secrets) {
            Ok(request) => {
                if request.service_cert.is_some() {
                    labelled.warnings.push(Warning {
                        route: service.name.clone(),
                        message: "com.df.serviceCert is not read from labels (a private key in a label is readable by anyone who can inspect the service): give the certificate as a Docker secret read through `defaults.https.certificate_dirs`, or upload it with PUT /v1/docker-flow-proxy/cert".into(),
                    });
                }
                labelled.services.push(ServiceRoutes {
                    service: service.name.clone(),
                    routes: request.routes,
                    userlists: request.userlists,
                });
            }
            Err(e) => labelled.warnings.push(Warning {
                route: service.name.clone(),
                message: format!("com.df labels ignored: {e}"),
            }),
        }
    }
    labelled
}

/// The Docker Flow Proxy `reconfigure` parameters that Docker Flow Swarm
/// Listener would send for this service, or `None` when it is not labelled
/// `com.df.notify=true`.
///
/// Every other `com.df.<param>=<value>` label becomes `(param, value)` (in
/// label order), after `("serviceName", <name>)`: the service name, without
/// its `<stack>_` prefix when `com.df.shortName=true` (the stack being the
/// `com.docker.stack.namespace` label). A `com.df.serviceName` label
/// replaces that computed name, as with DFSL. `shortName` itself is passed
/// on like any other label (DFP ignores it). DFSL also sent `replicas` and
/// `distribute=true`; those describe DFP's own deployment and are not
/// produced.
pub fn dfp_label_params(service: &ServiceInfo) -> Option<Vec<(String, String)>> {
    if service.labels.get(DF_NOTIFY_LABEL).map(String::as_str) != Some("true") {
        return None;
    }
    let params: Vec<(String, String)> = service
        .labels
        .iter()
        .filter(|(key, _)| key.as_str() != DF_NOTIFY_LABEL)
        .filter_map(|(key, value)| {
            let param = key.strip_prefix(DF_LABEL_PREFIX)?;
            (!param.is_empty()).then(|| (param.to_string(), value.clone()))
        })
        .collect();
    let mut out = Vec::with_capacity(params.len() + 1);
    if !params.iter().any(|(param, _)| param == "serviceName") {
        out.push(("serviceName".to_string(), dfp_service_name(service)));
    }
    out.extend(params);
    Some(out)
}

/// The service's name for DFP: see [`dfp_label_params`].
fn dfp_service_name(service: &ServiceInfo) -> String {
    let short = service.labels.get(DF_SHORT_NAME_LABEL).map(String::as_str) == Some("true");
    let stack = service.labels.get(STACK_NAMESPACE_LABEL);
    match stack {
        Some(stack) if short && !stack.is_empty() => service
            .name
            .strip_prefix(stack.as_str())
            .and_then(|rest| rest.strip_prefix('_'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(&service.name)
            .to_string(),
        _ => service.name.clone(),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::swarm_snapshot::fixtures::service;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dfp_params_need_the_notify_label() {
        assert_eq!(dfp_label_params(&service("web", &[], vec![])), None);
        let off = service(
            "web",
            &[("com.df.notify", "false"), ("com.df.port", "80")],
            vec![],
        );
        assert_eq!(dfp_label_params(&off), None);
    }

    #[test]
    fn dfp_params_are_the_com_df_labels_after_the_service_name() {
        let svc = service(
            "go-demo",
            &[
                ("com.df.notify", "true"),
                ("com.df.servicePath", "/demo"),
                ("com.df.port", "8080"),
                ("com.df.serviceDomain", "x.com"),
                ("com.df.", "ignored"),
                ("com.docker.stack.namespace", "shop"),
                ("traefik.enable", "true"),
            ],
            vec![],
        );
        assert_eq!(
            dfp_label_params(&svc),
            Some(pairs(&[
                ("serviceName", "go-demo"),
                ("port", "8080"),
                ("serviceDomain", "x.com"),
                ("servicePath", "/demo"),
            ]))
        );
    }

    #[test]
    fn dfp_short_name_strips_the_stack_prefix() {
        let labels = [
            ("com.df.notify", "true"),
            ("com.df.shortName", "true"),
            ("com.df.port", "8080"),
            ("com.docker.stack.namespace", "shop"),
        ];
        let params = dfp_label_params(&service("shop_go-demo", &labels, vec![])).unwrap();
        assert_eq!(
            params[0],
            ("serviceName".to_string(), "go-demo".to_string())
        );
        assert!(params.contains(&("shortName".to_string(), "true".to_string())));
        // not the stack's prefix: kept whole
        let other = dfp_label_params(&service("shopping_go-demo", &labels, vec![])).unwrap();
        assert_eq!(other[0].1, "shopping_go-demo");
        // shortName without a stack, or not "true": the full name
        let no_stack = dfp_label_params(&service(
            "shop_go-demo",
            &[("com.df.notify", "true"), ("com.df.shortName", "true")],
            vec![],
        ))
        .unwrap();
        assert_eq!(no_stack[0].1, "shop_go-demo");
        let long = dfp_label_params(&service(
            "shop_go-demo",
            &[
                ("com.df.notify", "true"),
                ("com.df.shortName", "false"),
                ("com.docker.stack.namespace", "shop"),
            ],
            vec![],
        ))
        .unwrap();
        assert_eq!(long[0].1, "shop_go-demo");
    }

    #[test]
    fn dfp_service_name_label_overrides_the_computed_name() {
        let svc = service(
            "shop_go-demo",
            &[("com.df.notify", "true"), ("com.df.serviceName", "demo")],
            vec![],
        );
        assert_eq!(
            dfp_label_params(&svc),
            Some(pairs(&[("serviceName", "demo")]))
        );
    }
}

//! Computes the edge proxy's route table from the store and the observed containers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use berth_domain::routes::{Route, RouteTable};
use berth_domain::{ApplicationId, Hostname};
use berth_store::Lifecycle;

use crate::adapters::ContainerState;
use crate::engine::{Engine, EngineError};

/// One route per public application with a port: to its serving container, or to nothing
/// (the proxy then answers 503) when that container is not running.
pub(crate) async fn compute_route_table(
    engine: &Engine,
    override_route: Option<(ApplicationId, Vec<SocketAddr>)>,
    observed: Option<&HashMap<String, ContainerState>>,
) -> Result<RouteTable, EngineError> {
    let store = &engine.store;
    let projects: BTreeMap<_, _> = store
        .list_projects(engine.organization)
        .await?
        .into_iter()
        .filter(|p| p.lifecycle == Lifecycle::Active)
        .map(|p| (p.id, p))
        .collect();
    let environments: BTreeMap<_, _> = store
        .all_environments(engine.organization)
        .await?
        .into_iter()
        .filter(|e| e.lifecycle == Lifecycle::Active && projects.contains_key(&e.project_id))
        .map(|e| (e.id, e))
        .collect();
    let mut routes = Vec::new();
    for application in store.all_applications(engine.organization).await? {
        if application.lifecycle != Lifecycle::Active || !application.spec.is_routed() {
            continue;
        }
        let Some(environment) = environments.get(&application.environment_id) else {
            continue;
        };
        let Some(project) = projects.get(&environment.project_id) else {
            continue;
        };
        let upstreams = match &override_route {
            Some((id, addresses)) if *id == application.id => addresses.clone(),
            _ => engine.serving_addresses(&application, observed).await?,
        };
        if application.current_deployment_id.is_none() && upstreams.is_empty() {
            continue;
        }
        let host = Hostname::for_application(
            &application.name,
            &environment.name,
            &project.name,
            &engine.config.base_domain,
        );
        routes.push(Route { host: host.to_string(), upstreams });
    }
    routes.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(RouteTable { generation: engine.next_generation(), routes })
}

//! `berth server` and `berth proxy`: wiring of configuration, store, adapters, engine and
//! HTTP server, and orderly shutdown.
//!
//! SIGTERM/SIGINT: the API stops accepting, finishes in-flight requests and the engine
//! stops; application containers and the proxy keep running.

use std::sync::Arc;

use anyhow::Context;
use berth_engine::config::{EngineConfig, StepDeadlines};
use berth_engine::{Adapters, Engine};
use berth_store::Store;
use tokio_util::sync::CancellationToken;

use crate::config::{ProxyArgs, ServerArgs};
use crate::state::{AppState, PublicSettings};
use crate::{api, bootstrap, proxy_supervisor};

pub async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let settings = args.validate().map_err(anyhow::Error::msg)?;
    let data_dir = settings.data_dir.clone();
    bootstrap::prepare_data_dir(&data_dir)?;
    let key = bootstrap::load_master_key(&settings.master_key_file)?;
    // Before anything is started: a misconfigured backup store stops the start here.
    let backup_store = crate::backup_store::backup_store(&settings, &data_dir).await?;
    let store = Store::open(&data_dir.join("berth.db")).await.context("cannot open the store")?;
    let organization = bootstrap::ensure_organization(&store, &data_dir).await?;
    let listener = tokio::net::TcpListener::bind(settings.listen).await.with_context(|| {
        format!(
            "cannot listen on {}; is another server running? choose another address with --listen",
            settings.listen
        )
    })?;

    if settings.start_proxy {
        proxy_supervisor::ensure_proxy(&data_dir, settings.proxy_listen).await?;
    }
    let docker = Arc::new(connect_docker(&settings.docker_socket).await?);
    let git_temp = data_dir.join("tmp");
    bootstrap::prepare_data_dir(&git_temp)?;
    let git = Arc::new(berth_git::GitCli::new().with_temp_root(git_temp));
    let adapters = Adapters {
        source: git,
        builder: docker.clone(),
        runtime: docker,
        router: Arc::new(proxy_supervisor::ProxyRouter::new(&data_dir)),
        database_verifier: Arc::new(berth_database_check::NetworkDatabaseVerifier),
        backup_store,
    };
    let engine_config = EngineConfig {
        data_dir: data_dir.clone(),
        base_domain: settings.base_domain.clone(),
        allow_local_repositories: settings.allow_local_repositories,
        deadlines: StepDeadlines {
            health: settings.health_timeout,
            build: settings.build_timeout,
            release: settings.release_timeout,
            clone: settings.clone_timeout,
            start: settings.start_timeout,
            ..StepDeadlines::default()
        },
        max_parallel_deployments: 4,
        deploy_concurrency: settings.deploy_concurrency,
        keep_successful_images: settings.keep_images,
        pause_at: settings.pause_at,
    };
    let engine = Engine::new(store.clone(), adapters, key.clone(), engine_config, organization.id);
    let shutdown = CancellationToken::new();
    let engine_task = tokio::spawn(Arc::clone(&engine).run(shutdown.clone()));
    if settings.start_proxy {
        tokio::spawn(proxy_supervisor::supervise(
            data_dir.clone(),
            settings.proxy_listen,
            shutdown.clone(),
        ));
    }

    let state = AppState {
        store,
        engine,
        key,
        organization: organization.id,
        settings: Arc::new(PublicSettings {
            base_domain: settings.base_domain.clone(),
            proxy_port: settings.proxy_listen.port(),
            allow_local_repositories: settings.allow_local_repositories,
        }),
    };
    std::fs::write(data_dir.join("server.pid"), format!("{}\n", std::process::id())).ok();
    println!(
        "Berth server listening on http://{} (applications on http://*.{}:{}); admin token in {}",
        settings.listen,
        settings.base_domain,
        settings.proxy_listen.port(),
        bootstrap::admin_token_path(&data_dir).display()
    );
    let signal_shutdown = shutdown.clone();
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            tracing::info!(
                "stopping: finishing in-flight requests; containers and the proxy keep running"
            );
            signal_shutdown.cancel();
        })
        .await
        .context("the API server failed")?;
    shutdown.cancel();
    let _ = engine_task.await;
    std::fs::remove_file(data_dir.join("server.pid")).ok();
    Ok(())
}

/// Connects to the Docker engine, waiting up to two minutes for it: after a reboot or a
/// restart of dockerd the server may start first.
async fn connect_docker(socket: &str) -> anyhow::Result<berth_docker::DockerEngine> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut announced = false;
    loop {
        match berth_docker::DockerEngine::connect(Some(socket)).await {
            Ok(docker) => return Ok(docker),
            Err(error) if tokio::time::Instant::now() < deadline => {
                if !announced {
                    tracing::warn!(%error, "the Docker engine does not answer yet; waiting up to 2 minutes");
                    announced = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context("cannot reach the Docker engine"))
            }
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        // Without signal handlers the server can still be stopped by SIGKILL.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

pub async fn run_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(crate::config::default_data_dir);
    let mut config =
        berth_proxy::ProxyConfig::in_state_directory(&proxy_supervisor::proxy_state_dir(&data_dir));
    config.listen = args.listen;
    berth_proxy::run(config).await.context("the edge proxy failed")?;
    Ok(())
}

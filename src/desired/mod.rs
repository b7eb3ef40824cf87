//! Sources → one desired state, pure: git's routes with the `com.df.*`
//! label routes under them and the overrides over them ([`overlay`]), each
//! route's servers from Swarm's tasks ([`servers`]).

pub mod overlay;
pub mod servers;

use std::path::PathBuf;

use crate::model::RoutesFile;
use crate::sources::Warning;
use crate::sources::swarm_snapshot::SwarmState;
pub use crate::sources::user_files::FileUsers;
use servers::TaskServers;

/// What capstan wants HAProxy to serve: what the renderer takes.
#[derive(Debug, Clone)]
pub struct DesiredState {
    /// git's routes, label routes under them, overrides over them.
    pub routes: RoutesFile,
    /// The servers of the routes Swarm's tasks serve; a route not here is
    /// served at its service's name (or its fixed `servers`).
    pub servers: TaskServers,
    /// Routes that cannot be served as declared (no such service, no
    /// running task, no shared network, unreadable labels).
    pub warnings: Vec<Warning>,
    /// The users of `routes`' userlists that are files, as read this reconcile.
    pub file_users: FileUsers,
    /// The crt-list of the certificates capstan manages (uploaded, from
    /// directories), when HTTPS serves it.
    pub crt_list: Option<PathBuf>,
    /// Where the http frontend's map files are written.
    pub maps_dir: PathBuf,
    /// The spare backends to declare: new services take them at run time.
    pub spares: Spares,
}

/// Spare backends: how many, and whether their server slots are for Swarm
/// tasks (health-checked) or for fixed `servers:` addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spares {
    pub count: usize,
    pub for_tasks: bool,
}

impl Spares {
    /// Spares for routes on fixed server addresses (no Swarm).
    pub fn for_fixed_servers() -> Self {
        Self {
            count: SPARE_BACKENDS,
            for_tasks: false,
        }
    }
}

/// Where map files go when the caller has no directory of its own
/// (`capstan render`, `capstan diff`).
pub const DEFAULT_MAPS_DIR: &str = "/etc/haproxy/maps";

/// Spare backends every config declares.
pub const SPARE_BACKENDS: usize = 8;

impl DesiredState {
    /// `routes` with no Swarm to look at.
    pub fn new(routes: RoutesFile) -> Self {
        Self {
            routes,
            servers: TaskServers::new(),
            warnings: Vec::new(),
            file_users: FileUsers::new(),
            crt_list: None,
            maps_dir: PathBuf::from(DEFAULT_MAPS_DIR),
            spares: Spares::for_fixed_servers(),
        }
    }

    /// `routes` served by their services' running tasks in `swarm` on
    /// `networks` (empty: any network but `ingress`).
    pub fn with_tasks(routes: RoutesFile, swarm: &SwarmState, networks: &[String]) -> Self {
        let (servers, warnings) = servers::resolve(&routes, swarm, networks);
        Self {
            servers,
            warnings,
            spares: Spares {
                count: SPARE_BACKENDS,
                for_tasks: true,
            },
            ..Self::new(routes)
        }
    }

    /// The state with the users read from the userlists' files.
    pub fn with_file_users(self, file_users: FileUsers) -> Self {
        Self { file_users, ..self }
    }

    /// The map files go to `maps_dir`.
    pub fn with_maps_dir(mut self, maps_dir: PathBuf) -> Self {
        self.maps_dir = maps_dir;
        self
    }

    /// HTTPS also serves the certificates of `crt_list`, if any.
    pub fn with_crt_list(mut self, crt_list: Option<PathBuf>) -> Self {
        self.crt_list = crt_list;
        self
    }
}

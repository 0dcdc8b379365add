//! The store's tests, run against SQLite always and against a fresh PostgreSQL database when
//! `NIGEHBAN_TEST_PG` is set (`.ci/run` sets it).

mod audit;
mod auth;
mod monitoring;
mod notify;
mod objects;
mod retrohunt;
mod tree_and_users;

use nigehban_store::Store;
use nigehban_store::testing::{FreshDatabase, postgres_url};

/// A store on each available back end; `cleanup` drops the PostgreSQL database.
pub struct Backends {
    pub stores: Vec<Store>,
    pg: Option<FreshDatabase>,
    _dir: tempfile::TempDir,
}

impl Backends {
    pub async fn new() -> Backends {
        let dir = tempfile::tempdir().unwrap();
        let mut stores = vec![Store::open_sqlite(dir.path()).await.unwrap()];
        let mut pg = None;
        match postgres_url() {
            Some(url) => {
                let db = FreshDatabase::create(&url).await.unwrap();
                stores.push(Store::open_postgres(&db.url).await.unwrap());
                pg = Some(db);
            }
            None if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("NIGEHBAN_TEST_PG is not set: under CI=true the PostgreSQL tests must run")
            }
            None => eprintln!("notice: NIGEHBAN_TEST_PG not set; store tests run on SQLite only"),
        }
        Backends { stores, pg, _dir: dir }
    }

    /// Another store over the same database as `stores[i]`, as a second node would open it.
    pub async fn second_node(&self, i: usize) -> Store {
        match (i, &self.pg) {
            (0, _) => Store::open_sqlite(self._dir.path()).await.unwrap(),
            (_, Some(db)) => Store::open_postgres(&db.url).await.unwrap(),
            (_, None) => panic!("no store {i}"),
        }
    }

    pub async fn cleanup(self) {
        for s in &self.stores {
            s.close().await;
        }
        if let Some(db) = self.pg {
            db.drop_now().await.unwrap();
        }
    }
}

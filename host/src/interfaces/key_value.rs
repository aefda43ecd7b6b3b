//! `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue/{store,atomics}@0.2.0-draft2`:
//! two interfaces over one implementation. Both open the same `Bucket` (a
//! granted label's `KvStore`), and every operation they share is one generic
//! function here; only the error type differs.

use crate::bindings::fermyon::spin::key_value;
use crate::bindings::wasi::keyvalue::{atomics, store};
use crate::state::RequestState;
use vapi_edge_backends::kv::{Bucket, Cas, KvError, KvStore};
use wasmtime::component::Resource;

/// Why a label cannot be opened, in either interface's terms.
trait StoreError {
    fn access_denied() -> Self;
    fn other(message: KvError) -> Self;
}

impl StoreError for key_value::Error {
    fn access_denied() -> Self {
        key_value::Error::AccessDenied
    }
    fn other(message: KvError) -> Self {
        key_value::Error::Other(message)
    }
}

impl StoreError for store::Error {
    fn access_denied() -> Self {
        store::Error::AccessDenied
    }
    fn other(message: KvError) -> Self {
        store::Error::Other(message)
    }
}

impl RequestState {
    fn open_bucket<E: StoreError>(
        &mut self,
        label: &str,
    ) -> wasmtime::Result<Result<Resource<Bucket>, E>> {
        let Some(store) = self.services.key_value.get(label).cloned() else {
            return Ok(Err(E::access_denied()));
        };
        Ok(Ok(self.table.push(Bucket { store })?))
    }

    fn bucket(&self, handle: &Resource<Bucket>) -> wasmtime::Result<KvStore> {
        Ok(self.table.get(handle)?.store.clone())
    }

    async fn kv_get<E: StoreError>(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, E>> {
        Ok(self.bucket(&this)?.get(&key).await.map_err(E::other))
    }

    async fn kv_set<E: StoreError>(
        &mut self,
        this: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), E>> {
        Ok(self
            .bucket(&this)?
            .set(&key, &value)
            .await
            .map_err(E::other))
    }

    async fn kv_delete<E: StoreError>(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), E>> {
        Ok(self.bucket(&this)?.delete(&key).await.map_err(E::other))
    }

    async fn kv_exists<E: StoreError>(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, E>> {
        Ok(self.bucket(&this)?.exists(&key).await.map_err(E::other))
    }

    async fn kv_keys<E: StoreError>(
        &mut self,
        this: Resource<Bucket>,
    ) -> wasmtime::Result<Result<Vec<String>, E>> {
        Ok(self.bucket(&this)?.keys().await.map_err(E::other))
    }
}

// ---- fermyon:spin/key-value ----

impl key_value::HostStore for RequestState {
    fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, key_value::Error>> {
        self.open_bucket(&label)
    }

    async fn get(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        self.kv_get(this, key).await
    }

    async fn set(
        &mut self,
        this: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        self.kv_set(this, key, value).await
    }

    async fn delete(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        self.kv_delete(this, key).await
    }

    async fn exists(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        self.kv_exists(this, key).await
    }

    async fn get_keys(
        &mut self,
        this: Resource<Bucket>,
    ) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        self.kv_keys(this).await
    }

    fn drop(&mut self, this: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl key_value::Host for RequestState {}

// ---- wasi:keyvalue/store and atomics ----

impl store::Host for RequestState {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        self.open_bucket(&identifier)
    }
}

impl store::HostBucket for RequestState {
    async fn get(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        self.kv_get(this, key).await
    }

    async fn set(
        &mut self,
        this: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        self.kv_set(this, key, value).await
    }

    async fn delete(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        self.kv_delete(this, key).await
    }

    async fn exists(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        self.kv_exists(this, key).await
    }

    async fn list_keys(
        &mut self,
        this: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        // One page holds every key, so a cursor only ever means "past the end".
        if cursor.is_some() {
            return Ok(Ok(store::KeyResponse {
                keys: Vec::new(),
                cursor: None,
            }));
        }
        Ok(self
            .kv_keys(this)
            .await?
            .map(|keys| store::KeyResponse { keys, cursor: None }))
    }

    fn drop(&mut self, this: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl atomics::Host for RequestState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        Ok(self
            .bucket(&bucket)?
            .increment(&key, delta)
            .await
            .map_err(store::Error::Other))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let cas = self.table.delete(cas)?;
        match cas
            .store
            .compare_and_swap(&cas.key, cas.seen.as_deref(), &value)
            .await
        {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // Hand back a fresh handle on the latest value, as the interface asks.
                let seen = match cas.store.get(&cas.key).await {
                    Ok(seen) => seen,
                    Err(e) => {
                        return Ok(Err(atomics::CasError::StoreError(store::Error::Other(e))))
                    }
                };
                let fresh = self.table.push(Cas {
                    store: cas.store,
                    key: cas.key,
                    seen,
                })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(store::Error::Other(e)))),
        }
    }
}

impl atomics::HostCas for RequestState {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, store::Error>> {
        let store = self.bucket(&bucket)?;
        let seen = match store.get(&key).await {
            Ok(seen) => seen,
            Err(e) => return Ok(Err(store::Error::Other(e))),
        };
        Ok(Ok(self.table.push(Cas { store, key, seen })?))
    }

    async fn current(
        &mut self,
        this: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self.table.get(&this)?.seen.clone()))
    }

    fn drop(&mut self, this: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

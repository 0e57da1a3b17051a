//! SeaORM entities for every Switchboard table. Entities hold no logic and never reach the wire:
//! the API converts them into DTOs, and secrets stay sealed blobs here.

pub mod api_key;
pub mod automation;
pub mod automation_run;
pub mod event;
pub mod org;
pub mod source_slug;
pub mod source_status;
pub mod stream_token;
pub mod webhook;
pub mod websocket_source;

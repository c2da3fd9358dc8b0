pub struct RedbStore;

// Private: a binary heap whose items know their own place in it
// (`heapIndex`), so that an item whose rank moved is sifted from where it
// is in O(log n), with no search and no allocation. serve()'s admission
// keeps the addresses with pending connections in one (the one to evict
// from first on top).

/** What the heap stores: its place in the heap, -1 when not in it. */
export interface HeapItem {
  heapIndex: number;
}

/** A heap ordered by `before(a, b)`: true when `a` ranks above `b`. */
export class IndexedHeap<E extends HeapItem> {
  #items: E[] = [];
  #before: (a: E, b: E) => boolean;

  constructor(before: (a: E, b: E) => boolean) {
    this.#before = before;
  }

  /** How many items it holds. */
  get size(): number {
    return this.#items.length;
  }

  /** The item that ranks first, if any. */
  top(): E | undefined {
    return this.#items[0];
  }

  /** Adds `item` if it is not in the heap, or moves it up after it rose. */
  raise(item: E): void {
    if (item.heapIndex < 0) {
      item.heapIndex = this.#items.length;
      this.#items.push(item);
    }
    this.#siftUp(item.heapIndex);
  }

  /** Moves `item` (in the heap) down after it sank. */
  lower(item: E): void {
    this.#siftDown(item.heapIndex);
  }

  /** Takes `item` (in the heap) out. */
  remove(item: E): void {
    const items = this.#items;
    const index = item.heapIndex;
    item.heapIndex = -1;
    const last = items.pop()!;
    if (last === item) return;
    this.#place(last, index);
    this.#siftUp(index);
    this.#siftDown(last.heapIndex);
  }

  #siftUp(index: number): void {
    const items = this.#items;
    const item = items[index];
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = items[parentIndex];
      if (!this.#before(item, parent)) break;
      this.#place(parent, index);
      index = parentIndex;
    }
    this.#place(item, index);
  }

  #siftDown(index: number): void {
    const items = this.#items;
    const length = items.length;
    const item = items[index];
    while (true) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      const child = right < length && this.#before(items[right], items[left])
        ? right
        : left;
      if (!this.#before(items[child], item)) break;
      this.#place(items[child], index);
      index = child;
    }
    this.#place(item, index);
  }

  /** Puts `item` at `index`. */
  #place(item: E, index: number): void {
    this.#items[index] = item;
    item.heapIndex = index;
  }
}

import { FieldsyncError, type Contact, type Conversation, type DirectoryUser, type FieldsyncClient, type Item, type Message, type Space } from '@fieldsync/client';
import { el, replace } from './dom.js';
import type { SessionUser } from './session.js';

export interface ViewContext {
  client: FieldsyncClient;
  user: SessionUser;
  root: HTMLElement;
  notify: (message: string) => void;
  /** What follows the view's name in the hash (`#/chat/<id>`). */
  param?: string;
}

/** A mounted view: `stop` ends its live queries. */
export interface View {
  stop(): void;
}

const fullName = (c: Pick<Contact, 'firstName' | 'lastName'>) => [c.firstName, c.lastName].filter(Boolean).join(' ');
const errorText = (error: unknown) => (error instanceof FieldsyncError ? error.message : String((error as Error)?.message ?? error));

/** The fields the contact form edits, in order. */
const CONTACT_FIELDS = [
  ['firstName', 'First name', 'text', true],
  ['lastName', 'Last name', 'text', false],
  ['phonePrimary', 'Phone', 'tel', true],
  ['email', 'Email', 'email', false],
  ['company', 'Company', 'text', false],
  ['notes', 'Notes', 'textarea', false],
] as const;

/** Contacts: a live, searchable list, and a form to create or edit one. */
export function contactsView({ client, root, notify }: ViewContext): View {
  const search = el('input', { id: 'contact-search', type: 'search', placeholder: 'Search name, phone, email, company', 'aria-label': 'Search contacts' });
  const list = el('ul', { id: 'contact-list', className: 'rows' });
  const editor = el('div', { id: 'contact-editor' });
  replace(root, el('div', { className: 'toolbar' }, search, el('button', { id: 'new-contact', type: 'button', onclick: () => edit(undefined) }, 'New contact')), list, editor);

  let stopWatch = () => {};
  const watch = () => {
    stopWatch();
    const terms = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const digits = search.value.replace(/\D/g, '');
    const matches = (c: Contact) => {
      const text = [c.firstName, c.lastName, c.email, c.company, c.phonePrimary, c.phoneSecondary].filter(Boolean).join(' ').toLowerCase();
      const phones = `${c.phonePrimary ?? ''} ${c.phoneSecondary ?? ''}`.replace(/\D/g, '');
      return terms.every((t) => text.includes(t)) || (digits.length >= 3 && phones.includes(digits));
    };
    stopWatch = client.watch('contacts', { where: terms.length ? matches : undefined, orderBy: ['lastName', 'asc'], limit: 500 }, render);
  };
  const render = (contacts: Contact[]) => {
    if (contacts.length === 0) return replace(list, el('li', { className: 'empty' }, search.value ? 'No contact matches.' : 'No contacts yet.'));
    replace(
      list,
      ...contacts.map((c) =>
        el(
          'li',
          { className: 'clickable', 'data-id': c.id, tabindex: 0, onclick: () => edit(c.id), onkeydown: (e) => (e as KeyboardEvent).key === 'Enter' && edit(c.id) },
          el('div', {}, el('div', { className: 'name' }, fullName(c)), el('div', { className: 'sub' }, [c.phonePrimary, c.company, c.email].filter(Boolean).join(' · '))),
          client.isPending('contacts', c.id) && el('span', { className: 'badge' }, 'not synced'),
        ),
      ),
    );
  };

  async function edit(id: string | undefined) {
    const contact = id ? await client.get('contacts', id) : undefined;
    if (id && !contact) return notify('That contact is gone (deleted on another device).');
    const inputs = new Map<string, HTMLInputElement | HTMLTextAreaElement>();
    const error = el('p', { className: 'error', role: 'alert' });
    const form = el(
      'form',
      { id: 'contact-form', className: 'card', 'data-id': id ?? '' },
      el('h2', {}, contact ? `Edit ${fullName(contact)}` : 'New contact'),
      ...CONTACT_FIELDS.map(([name, label, type, required]) => {
        const value = contact ? String((contact as Record<string, unknown>)[name] ?? '') : '';
        const input = type === 'textarea' ? el('textarea', { name, id: `contact-${name}`, rows: 3 }) : el('input', { name, id: `contact-${name}`, type, required });
        input.value = value;
        inputs.set(name, input);
        return el('label', {}, label, input);
      }),
      error,
      el(
        'div',
        { className: 'actions' },
        el('button', { type: 'submit' }, 'Save'),
        el('button', { type: 'button', className: 'secondary', onclick: () => replace(editor) }, 'Cancel'),
        contact && el('button', { type: 'button', className: 'secondary', id: 'delete-contact', onclick: () => remove(contact) }, 'Delete'),
      ),
    );
    form.onsubmit = async (event) => {
      event.preventDefault();
      const values: Record<string, string | null> = {};
      for (const [name, input] of inputs) values[name] = input.value.trim() === '' ? null : input.value.trim();
      try {
        if (contact) {
          // Only the fields that changed: the server merges them with other devices' edits.
          const patch = Object.fromEntries(Object.entries(values).filter(([k, v]) => (contact as Record<string, unknown>)[k] !== v && !((contact as Record<string, unknown>)[k] == null && v === null)));
          if (Object.keys(patch).length > 0) await client.update('contacts', contact.id, patch);
        } else {
          const body = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== null)) as { firstName: string; phonePrimary: string };
          await client.create('contacts', body);
        }
        replace(editor);
      } catch (e) {
        error.textContent = errorText(e);
      }
    };
    replace(editor, form);
    inputs.get('firstName')?.focus();
  }

  async function remove(contact: Contact) {
    if (!confirm(`Delete ${fullName(contact)}?`)) return;
    await client.delete('contacts', contact.id).catch((e) => notify(errorText(e)));
    replace(editor);
  }

  search.addEventListener('input', watch);
  watch();
  return { stop: () => stopWatch() };
}

/** Lists: spaces, and the items of the chosen one (tick, add). */
export function listsView({ client, root, notify, param }: ViewContext): View {
  let selected = param;
  const spaces = el('ul', { id: 'space-list', className: 'rows' });
  const items = el('ul', { id: 'item-list', className: 'rows' });
  const itemsTitle = el('h2', { id: 'items-title' }, 'Choose a list');
  const newSpace = el('input', { id: 'new-space', placeholder: 'New list name', 'aria-label': 'New list name', maxlength: 200 });
  const newItem = el('input', { id: 'new-item', placeholder: 'Add an item', 'aria-label': 'New item', maxlength: 500, disabled: true });
  const spaceForm = el('form', { className: 'toolbar' }, newSpace, el('button', { type: 'submit' }, 'Add list'));
  const itemForm = el('form', { className: 'toolbar' }, newItem, el('button', { type: 'submit' }, 'Add'));
  replace(root, el('div', { className: 'columns' }, el('div', {}, el('h2', {}, 'Lists'), spaceForm, spaces), el('div', {}, itemsTitle, itemForm, items)));

  spaceForm.onsubmit = async (event) => {
    event.preventDefault();
    const name = newSpace.value.trim();
    if (!name) return;
    try {
      const space = await client.create('spaces', { name });
      newSpace.value = '';
      location.hash = `#/lists/${space.id}`;
    } catch (e) {
      notify(errorText(e));
    }
  };
  itemForm.onsubmit = async (event) => {
    event.preventDefault();
    const title = newItem.value.trim();
    if (!title || !selected) return;
    try {
      await client.create('items', { spaceId: selected, title });
      newItem.value = '';
    } catch (e) {
      notify(errorText(e));
    }
  };

  let stopItems = () => {};
  const showItems = async () => {
    stopItems();
    const space = selected ? await client.get('spaces', selected) : undefined;
    newItem.disabled = !space;
    itemsTitle.textContent = space ? space.name : 'Choose a list';
    if (!space) return replace(items);
    stopItems = client.watch('items', { where: { spaceId: space.id }, orderBy: ['createdAt', 'asc'] }, (rows: Item[]) => {
      if (rows.length === 0) return replace(items, el('li', { className: 'empty' }, 'Nothing in this list yet.'));
      replace(
        items,
        ...rows.map((item) => {
          const box = el('input', { type: 'checkbox', checked: item.isCompleted, 'aria-label': `Done: ${item.title}` });
          box.addEventListener('change', () => {
            void client.update('items', item.id, { isCompleted: box.checked, completedAt: box.checked ? new Date().toISOString() : null }).catch((e) => notify(errorText(e)));
          });
          return el('li', { 'data-id': item.id, className: item.isCompleted ? 'done' : '' }, box, el('span', { className: 'title' }, item.title), client.isPending('items', item.id) && el('span', { className: 'badge' }, 'not synced'));
        }),
      );
    });
  };
  const stopSpaces = client.watch('spaces', { orderBy: ['name', 'asc'] }, (rows: Space[]) => {
    if (rows.length === 0) replace(spaces, el('li', { className: 'empty' }, 'No lists yet.'));
    else {
      replace(
        spaces,
        ...rows.map((s) =>
          el('li', { className: `clickable${s.id === selected ? ' selected' : ''}`, 'data-id': s.id, onclick: () => (location.hash = `#/lists/${s.id}`) }, el('span', { className: 'name' }, s.name)),
        ),
      );
    }
    void showItems();
  });
  return {
    stop: () => {
      stopSpaces();
      stopItems();
    },
  };
}

/** Chat: conversations, start one with a teammate, and the messages of the chosen one. */
export function chatView({ client, user, root, notify, param }: ViewContext): View {
  const selected = param;
  const conversations = el('ul', { id: 'conversation-list', className: 'rows' });
  const people = el('select', { id: 'chat-user', 'aria-label': 'Teammate' });
  const start = el('form', { className: 'toolbar' }, people, el('button', { type: 'submit' }, 'Chat'));
  const messages = el('ul', { id: 'message-list', className: 'rows' });
  const input = el('input', { id: 'message-input', placeholder: 'Message', 'aria-label': 'Message', maxlength: 10_000, disabled: !selected });
  const send = el('form', { id: 'message-form', className: 'toolbar' }, input, el('button', { type: 'submit' }, 'Send'));
  const title = el('h2', { id: 'conversation-title' }, selected ? 'Conversation' : 'Choose a conversation');
  replace(root, el('div', { className: 'columns' }, el('div', {}, el('h2', {}, 'Chats'), start, conversations), el('div', {}, title, messages, send)));

  let users = new Map<string, DirectoryUser>();
  let list: Conversation[] = [];
  const nameOf = (id: string) => users.get(id)?.name ?? 'Someone';
  const titleOf = (c: Conversation) => (c.type === 'group' ? (c.title ?? 'Group') : c.participants.filter((p) => p !== user.id).map(nameOf).join(', ') || 'Just you');
  const renderConversations = () => {
    if (list.length === 0) return replace(conversations, el('li', { className: 'empty' }, 'No conversations yet.'));
    replace(
      conversations,
      ...list.map((c) =>
        el('li', { className: `clickable${c.id === selected ? ' selected' : ''}`, 'data-id': c.id, onclick: () => (location.hash = `#/chat/${c.id}`) }, el('span', { className: 'name' }, titleOf(c))),
      ),
    );
    const current = list.find((c) => c.id === selected);
    if (current) title.textContent = titleOf(current);
  };

  const stops = [
    client.watch('users', { orderBy: ['name', 'asc'] }, (rows: DirectoryUser[]) => {
      users = new Map(rows.map((u) => [u.id, u]));
      replace(people, ...rows.filter((u) => u.id !== user.id).map((u) => el('option', { value: u.id }, `${u.name} (${u.agentCode})`)));
      renderConversations();
    }),
    client.watch('conversations', { orderBy: ['updatedAt', 'desc'] }, (rows: Conversation[]) => {
      list = rows;
      renderConversations();
    }),
  ];
  if (selected) {
    stops.push(
      client.watch('messages', { where: { conversationId: selected }, orderBy: ['createdAt', 'asc'] }, (rows: Message[]) => {
        if (rows.length === 0) return replace(messages, el('li', { className: 'empty' }, 'No messages yet.'));
        replace(
          messages,
          ...rows.map((m) =>
            el(
              'li',
              { 'data-id': m.id, className: m.senderId === user.id || m.version === 0 ? 'mine' : '' },
              el('div', { className: 'sub' }, `${m.senderId && m.senderId !== user.id ? nameOf(m.senderId) : 'You'}${m.version === 0 ? ' · sending' : ''}`),
              el('div', { className: 'content' }, m.isDeleted ? '(deleted)' : m.content),
            ),
          ),
        );
      }),
    );
  }
  start.onsubmit = async (event) => {
    event.preventDefault();
    if (!people.value) return;
    const existing = list.find((c) => c.type === 'private' && c.participants.includes(people.value));
    try {
      const conversation = existing ?? (await client.create('conversations', { type: 'private', participants: [people.value] }));
      location.hash = `#/chat/${conversation.id}`;
    } catch (e) {
      notify(errorText(e));
    }
  };
  send.onsubmit = async (event) => {
    event.preventDefault();
    const content = input.value.trim();
    if (!content || !selected) return;
    try {
      await client.sendMessage(selected, content);
      input.value = '';
    } catch (e) {
      notify(errorText(e));
    }
  };
  return { stop: () => stops.forEach((stop) => stop()) };
}

-- The shop's database (shared by the shop and its admin). One copy per episode.
-- Dates are text 'YYYY-MM-DD HH:MM:SS'; money is REAL dollars rounded to cents.

CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);  -- today, seed

CREATE TABLE categories (
    id INTEGER PRIMARY KEY,
    parent_id INTEGER REFERENCES categories(id),  -- NULL for top-level categories
    name TEXT NOT NULL,                             -- 'Shoes'
    path TEXT NOT NULL UNIQUE,                      -- 'Clothing/Shoes'
    slug TEXT NOT NULL UNIQUE,                      -- 'clothing-shoes' (URL /category/<slug>)
    depth INTEGER NOT NULL,                         -- 0 for top-level
    description TEXT NOT NULL
);

CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,                       -- 'EL-1001' (URL /product/<sku>)
    name TEXT NOT NULL UNIQUE,
    category_id INTEGER NOT NULL REFERENCES categories(id),  -- always a leaf category
    brand TEXT NOT NULL,
    price REAL NOT NULL,
    stock INTEGER NOT NULL,                         -- units in stock; 0 = out of stock
    status TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),  -- disabled: hidden from the shop
    description TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX products_category ON products(category_id);

CREATE TABLE product_attributes (
    product_id INTEGER NOT NULL REFERENCES products(id),
    name TEXT NOT NULL,                             -- 'color'
    label TEXT NOT NULL,                            -- 'Color'
    value TEXT NOT NULL,                            -- 'Navy Blue'
    PRIMARY KEY (product_id, name)
);

CREATE TABLE customers (
    id INTEGER PRIMARY KEY,                         -- 1 is the default customer, signed in on the shop
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    phone TEXT NOT NULL,
    street TEXT NOT NULL,
    city TEXT NOT NULL,
    state TEXT NOT NULL,
    zip TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    number TEXT NOT NULL UNIQUE,                    -- '000000042', shown to people
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    status TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'on_hold', 'complete', 'canceled', 'closed')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    subtotal REAL NOT NULL,
    shipping_method TEXT NOT NULL CHECK (shipping_method IN ('standard', 'express')),
    shipping_amount REAL NOT NULL,
    grand_total REAL NOT NULL,
    ship_name TEXT NOT NULL,
    ship_street TEXT NOT NULL,
    ship_city TEXT NOT NULL,
    ship_state TEXT NOT NULL,
    ship_zip TEXT NOT NULL,
    ship_phone TEXT NOT NULL
);
CREATE INDEX orders_customer ON orders(customer_id);
CREATE INDEX orders_created ON orders(created_at);

CREATE TABLE order_items (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    sku TEXT NOT NULL,
    name TEXT NOT NULL,                             -- the product's name when ordered
    price REAL NOT NULL,                            -- unit price when ordered
    qty INTEGER NOT NULL
);
CREATE INDEX order_items_order ON order_items(order_id);
CREATE INDEX order_items_product ON order_items(product_id);

CREATE TABLE order_history (                        -- status changes and admin comments
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    comment TEXT NOT NULL
);
CREATE INDEX order_history_order ON order_history(order_id);

CREATE TABLE reviews (
    id INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL REFERENCES products(id),
    customer_id INTEGER REFERENCES customers(id),   -- NULL: a guest review
    nickname TEXT NOT NULL,
    rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('approved', 'pending', 'rejected')),  -- only approved ones show
    created_at TEXT NOT NULL
);
CREATE INDEX reviews_product ON reviews(product_id);

CREATE TABLE cart_items (
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    qty INTEGER NOT NULL CHECK (qty > 0),
    added_at TEXT NOT NULL,
    PRIMARY KEY (customer_id, product_id)
);

CREATE TABLE wishlist_items (
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    added_at TEXT NOT NULL,
    PRIMARY KEY (customer_id, product_id)
);

CREATE TABLE sessions (                             -- who is signed in: site 'shop' -> a customer id
    site TEXT PRIMARY KEY,
    user_id INTEGER
);
